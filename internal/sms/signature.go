package sms

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net"
	"net/url"
	"slices"
	"strings"
)

// VerifySignature reports whether signature, the X-Twilio-Signature header
// of a webhook request, is Twilio's signature of a form POST of form to
// fullURL with authToken.
//
// Twilio signs the full URL it requested (scheme, host, port if any, path and
// query, exactly as configured), followed by each POST field name and value,
// fields sorted by name (and repeated values sorted), with HMAC-SHA1 keyed
// by the account's auth token; the header is its base64 encoding. As
// Twilio's own libraries do, the URL is also tried with the scheme's default
// port added when it has none, and without its port when it has one, because
// Twilio's signing is inconsistent about ports. fullURL must be the URL as
// Twilio saw it: behind a proxy, build it from the public URL, not from the
// request's Host.
//
// The comparison takes constant time. An empty auth token or signature never
// verifies. Webhooks that send a JSON body (bodySHA256) are not covered.
func VerifySignature(authToken, fullURL string, form url.Values, signature string) bool {
	if authToken == "" || signature == "" {
		return false
	}
	want, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || len(want) != sha1.Size {
		return false
	}
	params := signedParams(form)
	ok := hmac.Equal(sign(authToken, fullURL, params), want)
	if alt, changed := alternateURL(fullURL); changed {
		// Evaluate both, so that timing does not tell which one matched.
		ok = hmac.Equal(sign(authToken, alt, params), want) || ok
	}
	return ok
}

// signedParams returns the field names and values of form, concatenated in
// Twilio's signing order.
func signedParams(form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		vs := form[k]
		if len(vs) > 1 {
			vs = slices.Clone(vs)
			slices.Sort(vs)
		}
		for _, v := range vs {
			b.WriteString(k)
			b.WriteString(v)
		}
	}
	return b.String()
}

func sign(authToken, fullURL, params string) []byte {
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(fullURL))
	mac.Write([]byte(params))
	return mac.Sum(nil)
}

// alternateURL returns fullURL with the scheme's default port added when it
// has no port, or with its port removed when it has one; changed is false
// when there is no such variant.
func alternateURL(fullURL string) (alt string, changed bool) {
	u, err := url.Parse(fullURL)
	if err != nil || u.Host == "" {
		return "", false
	}
	host, port := u.Hostname(), u.Port()
	switch {
	case port != "":
		if strings.Contains(host, ":") {
			host = "[" + host + "]" // IPv6 literal
		}
		u.Host = host
	case u.Scheme == "https":
		u.Host = net.JoinHostPort(host, "443")
	case u.Scheme == "http":
		u.Host = net.JoinHostPort(host, "80")
	default:
		return "", false
	}
	return u.String(), true
}
