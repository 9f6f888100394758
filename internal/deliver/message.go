// Package deliver claims queued deliveries from the ledger, turns them into
// messages, hands them to a channel Sender and records each outcome.
//
// This file holds the types shared with the channel senders (internal/email,
// internal/sms): the Message they send and the typed errors the retry policy
// inspects.
package deliver

import "time"

// Channel names, as stored in deliveries.channel.
const (
	ChannelEmail   = "email"
	ChannelSMS     = "sms"
	ChannelWebhook = "webhook" // a signed JSON POST (Standard Webhooks)
	ChannelTeams   = "teams"   // a Microsoft Teams incoming webhook or Workflows URL
	ChannelSlack   = "slack"   // a Slack incoming webhook
)

// Channels are every channel, in the order lists show them.
var Channels = []string{ChannelEmail, ChannelSMS, ChannelWebhook, ChannelTeams, ChannelSlack}

// Message is one rendered notification for one recipient on one channel.
type Message struct {
	// DeliveryID is the ledger row this message belongs to.
	DeliveryID int64
	// Channel is one of the Channel* names.
	Channel string
	// To is the recipient: an email address, an E.164 phone number, or a
	// destination's https URL.
	To string

	// Subject, Text and HTML are the email parts; for SMS Text is the body.
	Subject string
	Text    string
	HTML    string

	// MessageID is the stable RFC 5322 Message-ID of an email, derived from
	// the delivery so that a resend is recognisable (without angle brackets).
	MessageID string
	// UnsubscribeURL is the https one-click (RFC 8058) target and
	// UnsubscribeMailto the mailto: target of List-Unsubscribe.
	UnsubscribeURL    string
	UnsubscribeMailto string

	// StatusCallback is the URL the SMS provider reports delivery status to.
	StatusCallback string
	// Body is the request body of a webhook-style channel (JSON), and
	// Secret the destination's signing secret (whsec_…, internal/webhook).
	Body   []byte
	Secret string

	// Expires is when the delivery's maximum age runs out: a provider that
	// queues messages drops this one rather than deliver it later (Twilio's
	// ValidityPeriod). Zero means no limit.
	Expires time.Time
}
