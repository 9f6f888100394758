// Package webhook posts notifications to subscribers' own HTTPS endpoints:
// signed as the Standard Webhooks specification says
// (https://www.standardwebhooks.com), dialled only to addresses that are
// not crier's own network, with answers mapped onto the delivery ledger's
// retry policy.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Headers of a signed request (Standard Webhooks).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// secretPrefix starts every secret shown to a subscriber, as the
// specification's examples do.
const secretPrefix = "whsec_"

// secretBytes is the length of a generated secret's key: 24 bytes, within
// the 24 to 64 the specification recommends.
const secretBytes = 24

// ErrBadSecret is returned for a secret that is not whsec_ and base64.
var ErrBadSecret = errors.New("webhook secret must be whsec_ followed by base64")

// NewSecret returns a new random secret, "whsec_" + base64 of 24 bytes.
func NewSecret() string {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return secretPrefix + base64.StdEncoding.EncodeToString(b)
}

// SecretKey returns the HMAC key of a secret: the bytes its base64 holds.
func SecretKey(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return nil, ErrBadSecret
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(key) == 0 {
		return nil, ErrBadSecret
	}
	return key, nil
}

// Sign returns the webhook-signature value for a message: "v1," and the
// base64 HMAC-SHA256, under key, of "id.timestamp.body" with the
// timestamp in Unix seconds.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
