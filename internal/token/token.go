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
	// server-side session's id as the id and its expiry (Unix seconds) as
	// the version.
	PurposeAdminSession = "admin-session"
	// PurposeAck is an acknowledgement link; its id is the delivery that
	// carried it (which names the incident and the recipient's home).
	PurposeAck = "ack"
)

// ErrInvalid is returned for any token that does not verify.
var ErrInvalid = errors.New("invalid token")

const macLen = 24

// Signer makes and verifies tokens with one key.
type Signer struct {
	key []byte
	// macs holds *macState for reuse: Reset brings an HMAC back to its
	// keyed state without hashing the key again, and every email makes
	// two or three tokens.
	macs sync.Pool
}

// macState is a keyed HMAC with its input and output buffers.
type macState struct {
	h        hash.Hash
	in, hash []byte
}

// NewSigner returns a Signer; the key must be at least 32 bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < 32 {
		return nil, errors.New("token: key must be at least 32 bytes")
	}
	s := &Signer{key: append([]byte(nil), key...)}
	s.macs.New = func() any { return &macState{h: hmac.New(sha256.New, s.key)} }
	return s, nil
}

// mac appends the MAC of (purpose, id, version) to dst.
func (s *Signer) mac(dst []byte, purpose string, id uint64, version uint32) []byte {
	m := s.macs.Get().(*macState)
	defer s.macs.Put(m)
	m.h.Reset()
	m.in = append(m.in[:0], purpose...)
	m.in = append(m.in, 0)
	m.in = binary.BigEndian.AppendUint64(m.in, id)
	m.in = binary.BigEndian.AppendUint32(m.in, version)
	m.h.Write(m.in)
	m.hash = m.h.Sum(m.hash[:0])
	return append(dst, m.hash[:macLen]...)
}

// tokenLen is the length of a token's bytes: id, version and MAC.
const tokenLen = 12 + macLen

// Len is the length of every token.
const Len = (tokenLen*8 + 5) / 6 // unpadded base64

// Make returns the token for a subscriber and purpose. version lets a
// subscriber's tokens be revoked by bumping it.
func (s *Signer) Make(purpose string, subscriberID int64, version uint32) string {
	var out [Len]byte
	s.Encode(&out, purpose, subscriberID, version)
	return string(out[:])
}

// Encode writes the token Make returns into out, so a caller building a
// link around it need not allocate the token on its own.
func (s *Signer) Encode(out *[Len]byte, purpose string, subscriberID int64, version uint32) {
	var raw [tokenLen]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(subscriberID))
	binary.BigEndian.PutUint32(raw[8:12], version)
	s.mac(raw[:12], purpose, uint64(subscriberID), version)
	base64.RawURLEncoding.Encode(out[:], raw[:])
}

// Verify checks a token for purpose and returns the subscriber id and token
// version it was made for. Every failure is ErrInvalid.
func (s *Signer) Verify(purpose, tok string) (subscriberID int64, version uint32, err error) {
	if len(tok) != base64.RawURLEncoding.EncodedLen(tokenLen) {
		return 0, 0, ErrInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) != tokenLen {
		return 0, 0, ErrInvalid
	}
	id := binary.BigEndian.Uint64(raw[:8])
	version = binary.BigEndian.Uint32(raw[8:12])
	var want [macLen]byte
	if !hmac.Equal(raw[12:], s.mac(want[:0], purpose, id, version)) {
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

// Pseudonym returns a keyed hash of value for purpose: the same for the same
// key, purpose and value, and no clue to the value without the key. Rate
// limits store it instead of a client's address or phone number.
func (s *Signer) Pseudonym(purpose, value string) string {
	m := s.macs.Get().(*macState)
	defer s.macs.Put(m)
	m.h.Reset()
	m.in = append(append(append(m.in[:0], "pseudonym:"...), purpose...), 0)
	m.in = append(m.in, value...)
	m.h.Write(m.in)
	m.hash = m.h.Sum(m.hash[:0])
	return base64.RawURLEncoding.EncodeToString(m.hash[:18])
}
