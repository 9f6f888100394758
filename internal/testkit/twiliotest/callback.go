package twiliotest

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// StatusUpdate is the content of a status callback Twilio posts to a
// message's StatusCallback URL when its status changes.
type StatusUpdate struct {
	MessageSid string
	// MessageStatus is one of queued, sending, sent, delivered,
	// undelivered, failed (or accepted, scheduled, canceled, read).
	MessageStatus string
	// ErrorCode is Twilio's error code for failed and undelivered messages,
	// 0 for none.
	ErrorCode           int
	To                  string
	From                string
	AccountSid          string
	MessagingServiceSid string
}

// Form returns the fields Twilio posts for u, including the legacy SmsSid and
// SmsStatus duplicates and ApiVersion. ErrorCode is omitted when 0, as
// Twilio does; empty fields are omitted.
func (u StatusUpdate) Form() url.Values {
	f := url.Values{}
	set := func(k, v string) {
		if v != "" {
			f.Set(k, v)
		}
	}
	set("MessageSid", u.MessageSid)
	set("SmsSid", u.MessageSid)
	set("MessageStatus", u.MessageStatus)
	set("SmsStatus", u.MessageStatus)
	set("To", u.To)
	set("From", u.From)
	set("AccountSid", u.AccountSid)
	set("MessagingServiceSid", u.MessagingServiceSid)
	set("ApiVersion", apiVersion)
	if u.ErrorCode != 0 {
		f.Set("ErrorCode", strconv.Itoa(u.ErrorCode))
	}
	return f
}

// Signature returns the X-Twilio-Signature Twilio sends with a form POST of
// form to fullURL, signed with authToken: the base64 HMAC-SHA1 of the URL
// followed by every field name and value, fields sorted by name (and the
// values of a repeated field sorted).
func Signature(authToken, fullURL string, form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(fullURL)
	for _, k := range keys {
		vs := append([]string(nil), form[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			b.WriteString(k)
			b.WriteString(v)
		}
	}
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SendStatusCallback posts form to callbackURL as Twilio posts a status
// callback: form-encoded, with an X-Twilio-Signature computed with authToken
// over callbackURL exactly as given, and Twilio's User-Agent. Use
// StatusUpdate.Form for the usual fields. The caller closes the response
// body.
func SendStatusCallback(ctx context.Context, callbackURL, authToken string, form url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, callbackURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("twiliotest: status callback: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", Signature(authToken, callbackURL, form))
	req.Header.Set("User-Agent", "TwilioProxy/1.1")
	req.Header.Set("I-Twilio-Idempotency-Token", newSID(""))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("twiliotest: status callback to %s: %w", callbackURL, err)
	}
	return resp, nil
}
