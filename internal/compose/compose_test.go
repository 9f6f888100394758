package compose

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/token"
)

// A resent email must carry the Message-ID of the first send, so its form
// must not change: "crier.<delivery id>.<12 hex digits of the event id's
// SHA-256>@<domain>".
func TestMessageID(t *testing.T) {
	h := sha256.Sum256([]byte("evt-2025-11-10-atlas-1"))
	want := "crier.9223372036854775807." + hex.EncodeToString(h[:6]) + "@care.example"
	if got := MessageID(1<<63-1, "evt-2025-11-10-atlas-1", "care.example"); got != want {
		t.Errorf("MessageID = %q, want %q", got, want)
	}
	if got := MessageID(7, "e", "d.example"); !strings.HasPrefix(got, "crier.7.") || !strings.HasSuffix(got, "@d.example") || len(got) != len("crier.7.")+12+len("@d.example") {
		t.Errorf("MessageID = %q", got)
	}
}

func TestLinksCarryVerifiableTokens(t *testing.T) {
	signer, err := token.NewSigner(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	c := New(Config{PublicURL: "https://status.care.example"}, nil, nil, signer)
	for _, tt := range []struct {
		url, prefix, purpose string
	}{
		{c.ManageURL(42), "https://status.care.example/manage/", token.PurposeManage},
		{c.UnsubscribeURL(42, "email"), "https://status.care.example/unsubscribe/", token.PurposeUnsubscribeEmail},
		{c.UnsubscribeURL(42, "sms"), "https://status.care.example/unsubscribe/", token.PurposeUnsubscribeSMS},
	} {
		tok, ok := strings.CutPrefix(tt.url, tt.prefix)
		if !ok {
			t.Errorf("%q does not start with %q", tt.url, tt.prefix)
			continue
		}
		if tok != signer.Make(tt.purpose, 42, 0) {
			t.Errorf("%q: token is not Make's", tt.url)
		}
		if id, v, err := signer.Verify(tt.purpose, tok); err != nil || id != 42 || v != 0 {
			t.Errorf("%q: Verify = %d, %d, %v", tt.url, id, v, err)
		}
	}
}
