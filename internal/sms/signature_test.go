package sms

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"

	"github.com/twilio/twilio-go/client"

	"github.com/crier-dev/crier/internal/testkit/twiliotest"
)

// The known answer published with twilio-go's RequestValidator tests.
const (
	vectorToken = "12345"
	vectorURL   = "https://mycompany.com/myapp.php?foo=1&bar=2"
	vectorSig   = "vOEb5UThFn24KEfnOFLQY2AE5FY="
)

func vectorForm() url.Values {
	return url.Values{
		"Digits":                {"1234"},
		"CallSid":               {"CA1234567890ABCDE"},
		"To":                    {"+18005551212"},
		"Caller":                {"+14158675309"},
		"From":                  {"+14158675309"},
		"ReasonConferenceEnded": {"test"},
		"Reason":                {"Participant"},
	}
}

func TestVerifySignature(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		token     string
		url       string
		form      url.Values
		signature string
		want      bool
	}{
		{"known answer", vectorToken, vectorURL, vectorForm(), vectorSig, true},
		{"default port added", vectorToken, strings.Replace(vectorURL, ".com", ".com:443", 1), vectorForm(), vectorSig, true},
		{"other port removed", vectorToken, strings.Replace(vectorURL, ".com", ".com:1234", 1), vectorForm(), vectorSig, true},
		{"http signature", vectorToken, strings.Replace(vectorURL, "https", "http", 1), vectorForm(), "n2xBNyzSW7rfYStDtOFiFMv7qNo=", true},
		{"wrong token", "54321", vectorURL, vectorForm(), vectorSig, false},
		{"other URL", vectorToken, vectorURL + "&baz=3", vectorForm(), vectorSig, false},
		{"other scheme", vectorToken, strings.Replace(vectorURL, "https", "http", 1), vectorForm(), vectorSig, false},
		{"field changed", vectorToken, vectorURL, func() url.Values { f := vectorForm(); f.Set("Digits", "1235"); return f }(), vectorSig, false},
		{"field added", vectorToken, vectorURL, func() url.Values { f := vectorForm(); f.Set("X", ""); return f }(), vectorSig, false},
		{"wrong sort order", vectorToken, vectorURL, vectorForm(), "95+Bu0JVPi0r/SsESZCVf0dWAjw=", false},
		{"garbage", vectorToken, vectorURL, vectorForm(), "WRONG SIGNATURE", false},
		{"empty signature", vectorToken, vectorURL, vectorForm(), "", false},
		{"truncated", vectorToken, vectorURL, vectorForm(), vectorSig[:20], false},
		{"empty token", "", vectorURL, vectorForm(), sig("", vectorURL, vectorForm()), false},
		{"no fields", vectorToken, vectorURL, nil, sig(vectorToken, vectorURL, nil), true},
	}
	for _, tt := range tests {
		if got := VerifySignature(tt.token, tt.url, tt.form, tt.signature); got != tt.want {
			t.Errorf("%s: VerifySignature = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// sig signs independently of the code under test, with twiliotest.
func sig(token, u string, form url.Values) string { return twiliotest.Signature(token, u, form) }

// TestVerifySignatureMatchesTwilioGo checks VerifySignature against
// twilio-go's RequestValidator on callbacks like the ones crier receives.
func TestVerifySignatureMatchesTwilioGo(t *testing.T) {
	t.Parallel()
	form := twiliotest.StatusUpdate{
		MessageSid: "SM0123456789abcdef0123456789abcdef", MessageStatus: "undelivered", ErrorCode: 30003,
		To: "+447400123456", From: "+12015550123", AccountSid: twiliotest.ExampleAccountSID,
	}.Form()
	for _, u := range []string{
		"https://crier.example.com/webhooks/twilio/status",
		"https://crier.example.com/webhooks/twilio/status?d=42&k=a%20b",
		"http://127.0.0.1:8080/webhooks/twilio/status?d=1",
		"https://crier.example.com:8443/webhooks/twilio/status",
	} {
		signature := sig(twiliotest.ExampleAuthToken, u, form)
		rv := client.NewRequestValidator(twiliotest.ExampleAuthToken)
		if !rv.ValidateBody(u, []byte(form.Encode()), signature) {
			t.Errorf("%s: twilio-go rejects twiliotest's signature", u)
		}
		if !VerifySignature(twiliotest.ExampleAuthToken, u, form, signature) {
			t.Errorf("%s: VerifySignature rejects a signature twilio-go accepts", u)
		}
		if VerifySignature("0000000000000000000000000000dead", u, form, signature) {
			t.Errorf("%s: verified with the wrong token", u)
		}
	}
}

func TestVerifySignatureRepeatedFields(t *testing.T) {
	t.Parallel()
	form := url.Values{"MediaUrl": {"https://b.example/2", "https://a.example/1"}, "Body": {"hi"}}
	// Twilio's libraries sort the values of a repeated field.
	payload := vectorURL + "Bodyhi" + "MediaUrlhttps://a.example/1" + "MediaUrlhttps://b.example/2"
	mac := hmac.New(sha1.New, []byte(vectorToken))
	mac.Write([]byte(payload))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !VerifySignature(vectorToken, vectorURL, form, want) {
		t.Error("repeated fields: signature over sorted values rejected")
	}
	if form["MediaUrl"][0] != "https://b.example/2" {
		t.Error("VerifySignature reordered the caller's form")
	}
}

// FuzzVerifySignature: VerifySignature never panics, a genuine signature
// always verifies (as it does for twilio-go), and anything else never does.
func FuzzVerifySignature(f *testing.F) {
	f.Add(vectorToken, vectorURL, "Digits", "1234", vectorSig)
	f.Add(twiliotest.ExampleAuthToken, "https://crier.example.com/webhooks/twilio/status", "MessageStatus", "delivered", "")
	f.Add("t", "http://[::1]:8080/x?y=z", "k", "v", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Add("t", "http://[::1]/x", "", "", "not base64!")
	f.Add("t", "::not a url", "k", "\x00\xff", "vOEb5UThFn24KEfnOFLQY2AE5FY=")
	f.Add("t", "https://h:443/", "k", "v", "vOEb5UThFn24KEfnOFLQY2AE5FY")
	f.Add("t", "", "", "", "")
	f.Fuzz(func(t *testing.T, token, rawURL, key, value, signature string) {
		form := url.Values{key: {value}}
		got := VerifySignature(token, rawURL, form, signature)

		genuine := sig(token, rawURL, form)
		if token != "" {
			if !VerifySignature(token, rawURL, form, genuine) {
				t.Fatalf("genuine signature %q rejected (token %q, URL %q)", genuine, token, rawURL)
			}
			rv := client.NewRequestValidator(token)
			if !rv.Validate(rawURL, map[string]string{key: value}, genuine) {
				t.Fatalf("twilio-go rejects the genuine signature: test oracle broken")
			}
		}
		if !got {
			return
		}
		// It verified: it must be the genuine signature of the URL or of
		// its port variant, with a non-empty token.
		ok := token != "" && signature == genuine
		if alt, changed := alternateURL(rawURL); changed {
			ok = ok || (token != "" && signature == sig(token, alt, form))
		}
		if !ok {
			t.Fatalf("signature %q verified for token %q, URL %q, %s=%q", signature, token, rawURL, key, value)
		}
	})
}
