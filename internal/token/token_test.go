package token

import (
	"bytes"
	"strings"
	"testing"
)

func TestTokens(t *testing.T) {
	s, err := NewSigner(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSigner(bytes.Repeat([]byte{8}, 32))
	tok := s.Make(PurposeManage, 42, 3)
	id, v, err := s.Verify(PurposeManage, tok)
	if err != nil || id != 42 || v != 3 {
		t.Fatalf("Verify = %d, %d, %v", id, v, err)
	}
	if len(tok) < 40 {
		t.Errorf("token %q is too short to be unguessable", tok)
	}
	bad := []struct{ name, purpose, tok string }{
		{"other purpose", PurposeUnsubscribeEmail, tok},
		{"empty", PurposeManage, ""},
		{"garbage", PurposeManage, strings.Repeat("A", len(tok))},
		{"flipped char", PurposeManage, tok[:len(tok)-1] + string("AB"[bytesIndex(tok[len(tok)-1])])},
		{"other id", PurposeManage, s.Make(PurposeManage, 43, 3)[:16] + tok[16:]},
		{"not base64", PurposeManage, strings.Repeat("*", len(tok))},
	}
	for _, b := range bad {
		if _, _, err := s.Verify(b.purpose, b.tok); err != ErrInvalid {
			t.Errorf("%s: Verify error = %v, want ErrInvalid", b.name, err)
		}
	}
	if _, _, err := other.Verify(PurposeManage, tok); err != ErrInvalid {
		t.Errorf("token verified under another key")
	}
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Error("short key accepted")
	}
}

func bytesIndex(c byte) int {
	if c == 'A' {
		return 1
	}
	return 0
}

func FuzzVerify(f *testing.F) {
	s, _ := NewSigner(bytes.Repeat([]byte{1}, 32))
	f.Add(s.Make(PurposeManage, 1, 0))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		id, _, err := s.Verify(PurposeManage, tok)
		if err == nil && s.Make(PurposeManage, id, 0) != tok {
			// A token that verifies must be exactly the one we would make
			// (for some version).
			if _, v, _ := s.Verify(PurposeManage, tok); s.Make(PurposeManage, id, v) != tok {
				t.Fatalf("forged token %q verified", tok)
			}
		}
	})
}

func BenchmarkMake(b *testing.B) {
	s, err := NewSigner(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = s.Make(PurposeUnsubscribeEmail, int64(i), 0)
	}
}

// Tokens already sent must keep verifying: these were made before the
// signer's buffers were pooled.
func TestTokensAreStable(t *testing.T) {
	s, err := NewSigner(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		purpose string
		id      int64
		version uint32
		tok     string
	}{
		{PurposeManage, 42, 3, "AAAAAAAAACoAAAADmsdOMllNv-5ztSfHHyyD3vgk3FG5GS4S"},
		{PurposeUnsubscribeSMS, 1<<40 + 5, 0, "AAABAAAAAAUAAAAA_1Q6xUkSf1U7DP2D9156Lqb87JM8DbGC"},
	} {
		if got := s.Make(tt.purpose, tt.id, tt.version); got != tt.tok {
			t.Errorf("Make(%s, %d, %d) = %s, want %s", tt.purpose, tt.id, tt.version, got, tt.tok)
		}
		if id, v, err := s.Verify(tt.purpose, tt.tok); err != nil || id != tt.id || v != tt.version {
			t.Errorf("Verify(%s) = %d, %d, %v", tt.tok, id, v, err)
		}
	}
}

func TestPseudonym(t *testing.T) {
	s, _ := NewSigner(bytes.Repeat([]byte{7}, 32))
	other, _ := NewSigner(bytes.Repeat([]byte{8}, 32))
	p := s.Pseudonym("sms", "+447400123456")
	if p != s.Pseudonym("sms", "+447400123456") {
		t.Error("not stable")
	}
	for name, q := range map[string]string{
		"other value":   s.Pseudonym("sms", "+447400123457"),
		"other purpose": s.Pseudonym("email", "+447400123456"),
		"other key":     other.Pseudonym("sms", "+447400123456"),
		"shifted":       s.Pseudonym("sms+", "447400123456"),
	} {
		if q == p {
			t.Errorf("%s: same pseudonym %s", name, p)
		}
	}
	if strings.Contains(p, "7400") || len(p) != 24 {
		t.Errorf("pseudonym %q", p)
	}
}
