// Package publicurl owns the paths of crier's public URLs: the pages a
// message links to and the webhooks providers call. The HTTP handlers
// register their routes with the patterns here, and everything that writes
// a link (messages, opt-in, the Twilio status callback) builds it with the
// functions here, so a link and its route cannot drift apart.
package publicurl

import (
	"net/url"
	"strconv"
	"strings"
)

// Paths of the links in messages, and the route patterns that serve them.
const (
	ManagePrefix      = "/manage/"
	UnsubscribePrefix = "/unsubscribe/"
	ConfirmPrefix     = "/confirm/"
	AckPrefix         = "/ack/"

	ManagePattern      = ManagePrefix + "{token}"
	UnsubscribePattern = UnsubscribePrefix + "{token}"
	ConfirmPattern     = ConfirmPrefix + "{id}/{token}"
	AckPattern         = AckPrefix + "{token}"

	// TwilioStatusPath receives Twilio's delivery reports (StatusCallback).
	TwilioStatusPath = "/webhooks/twilio/status"
	// TwilioInboundPath receives the texts people send back.
	TwilioInboundPath = "/webhooks/twilio/inbound"
)

// Base is CRIER_PUBLIC_URL without a trailing slash: the origin (and
// optional path prefix) that links start with.
type Base string

// New returns the Base for a public URL.
func New(publicURL string) Base { return Base(strings.TrimRight(publicURL, "/")) }

// TwilioStatus is the StatusCallback URL of every text.
func (b Base) TwilioStatus() string { return string(b) + TwilioStatusPath }

// Manage is the subscription page for a manage token.
func (b Base) Manage(token []byte) string { return b.join(ManagePrefix, token) }

// Ack is the acknowledgement page for an acknowledgement token.
func (b Base) Ack(token []byte) string { return b.join(AckPrefix, token) }

// AckPath is the path (no origin) of an acknowledgement page.
func AckPath(token string) string { return AckPrefix + url.PathEscape(token) }

// Unsubscribe is the one-click unsubscribe page for an unsubscribe token.
func (b Base) Unsubscribe(token []byte) string { return b.join(UnsubscribePrefix, token) }

// Confirm is the double opt-in link of subscriber id with its token.
func (b Base) Confirm(id int64, token string) string {
	return string(b) + ConfirmPath(strconv.FormatInt(id, 10), token)
}

// ManagePath, UnsubscribePath and ConfirmPath are the paths (no origin) of
// the pages, for forms that post back to them. The parts are escaped.
func ManagePath(token string) string      { return ManagePrefix + url.PathEscape(token) }
func UnsubscribePath(token string) string { return UnsubscribePrefix + url.PathEscape(token) }
func ConfirmPath(id, token string) string {
	return ConfirmPrefix + url.PathEscape(id) + "/" + url.PathEscape(token)
}

// join is the base, prefix and token in one allocation (links are made for
// every message). Tokens are URL-safe base64, so they need no escaping.
func (b Base) join(prefix string, token []byte) string {
	var s strings.Builder
	s.Grow(len(b) + len(prefix) + len(token))
	s.WriteString(string(b))
	s.WriteString(prefix)
	s.Write(token)
	return s.String()
}
