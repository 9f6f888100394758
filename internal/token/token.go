// Package token makes and checks the links crier puts in messages: the
// subscription management link and the one-click unsubscribe link. Tokens
// are HMAC-signed, carry the subscriber id, and cannot be guessed or
// enumerated without the key; crier does not need to store them.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"sync"
)

// Purposes a token can be made for; a token of one purpose never verifies
// as another.
const (
	PurposeManage           = "manage"
	PurposeUnsubscribeEmail = "unsubscribe-email"
	PurposeUnsubscribeSMS   = "unsubscribe-sms"
	// PurposeConfirmEmail is an email confirmation link (double opt-in).
	// internal/httpapi appends the address to it, so a link confirms only
	// the address it was sent to, and uses the version as the link's
	// expiry (Unix seconds).
	PurposeConfirmEmail = "confirm-email"
	// PurposeSMSCode keys the hash under which a texted confirmation code
	// is stored: the token made for it is never sent, only hashed.
	PurposeSMSCode = "sms-code"
	// PurposeAdminSession is the admin dashboard's session cookie: an HMAC
	// of the API token signed in with (never the token itself), with the
	// session's expiry (Unix seconds) as the version.
	PurposeAdminSession = "admin-session"
)

// ErrInvalid is returned for any token that does not verify.
var ErrInvalid = errors.New("invalid token")

const macLen = 24

// Signer makes and verifies tokens with one key.
type Signer struct {
	key []byte
	// macs holds keyed HMACs for reuse: Reset brings one back to its
	// keyed state without hashing the key again, and every email makes
	// two or three tokens.
	macs sync.Pool
}

// NewSigner returns a Signer; the key must be at least 32 bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < 32 {
		return nil, errors.New("token: key must be at least 32 bytes")
	}
	s := &Signer{key: append([]byte(nil), key...)}
	s.macs.New = func() any { return hmac.New(sha256.New, s.key) }
	return s, nil
}

func (s *Signer) mac(purpose string, id uint64, version uint32) []byte {
	m := s.macs.Get().(hash.Hash)
	defer s.macs.Put(m)
	m.Reset()
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], id)
	binary.BigEndian.PutUint32(b[8:], version)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(b[:])
	return m.Sum(make([]byte, 0, sha256.Size))[:macLen]
}

// Make returns the token for a subscriber and purpose. version lets a
// subscriber's tokens be revoked by bumping it.
func (s *Signer) Make(purpose string, subscriberID int64, version uint32) string {
	buf := make([]byte, 0, 12+macLen)
	buf = binary.BigEndian.AppendUint64(buf, uint64(subscriberID))
	buf = binary.BigEndian.AppendUint32(buf, version)
	buf = append(buf, s.mac(purpose, uint64(subscriberID), version)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// Verify checks a token for purpose and returns the subscriber id and token
// version it was made for. Every failure is ErrInvalid.
func (s *Signer) Verify(purpose, tok string) (subscriberID int64, version uint32, err error) {
	if len(tok) != base64.RawURLEncoding.EncodedLen(12+macLen) {
		return 0, 0, ErrInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) != 12+macLen {
		return 0, 0, ErrInvalid
	}
	id := binary.BigEndian.Uint64(raw[:8])
	version = binary.BigEndian.Uint32(raw[8:12])
	if !hmac.Equal(raw[12:], s.mac(purpose, id, version)) {
		return 0, 0, ErrInvalid
	}
	return int64(id), version, nil
}

// UnsubscribePurpose returns the unsubscribe purpose of a channel.
func UnsubscribePurpose(channel string) string {
	if channel == "sms" {
		return PurposeUnsubscribeSMS
	}
	return PurposeUnsubscribeEmail
}
