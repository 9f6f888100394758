package phone

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, region string
		want             string
		wantErr          error
		reason           string // substring of the error text
	}{
		{name: "GB national", in: "07400 123456", region: "GB", want: "+447400123456"},
		{name: "GB national no spaces", in: "07400123456", region: "GB", want: "+447400123456"},
		{name: "GB international", in: "+44 7400 123456", region: "GB", want: "+447400123456"},
		{name: "GB international without region", in: "+44 7400 123456", want: "+447400123456"},
		{name: "GB IDD 00", in: "0044 7400 123456", region: "GB", want: "+447400123456"},
		{name: "GB punctuation", in: "(07400) 123-456", region: "GB", want: "+447400123456"},
		{name: "GB trunk zero in brackets", in: "+44 (0)7400 123456", want: "+447400123456"},
		{name: "lower-case region", in: "07400 123456", region: "gb", want: "+447400123456"},
		{name: "surrounding space", in: "  07400 123456\t", region: "GB", want: "+447400123456"},
		{name: "tel URI", in: "tel:+447400123456", want: "+447400123456"},
		{name: "Isle of Man mobile", in: "07624 123456", region: "GB", want: "+447624123456"},
		{name: "US fixed line or mobile", in: "(201) 555-0123", region: "US", want: "+12015550123"},
		{name: "US from abroad", in: "+1 201 555 0123", region: "GB", want: "+12015550123"},
		{name: "DE mobile", in: "+49 1512 3456789", want: "+4915123456789"},
		{name: "FR mobile", in: "06 12 34 56 78", region: "FR", want: "+33612345678"},
		{name: "already E.164", in: "+447400123456", region: "US", want: "+447400123456"},

		{name: "empty", in: "", region: "GB", wantErr: ErrInvalid, reason: "empty"},
		{name: "blank", in: "   ", region: "GB", wantErr: ErrInvalid, reason: "empty"},
		{name: "letters", in: "call me", region: "GB", wantErr: ErrInvalid, reason: "does not look like"},
		{name: "too short", in: "0740012", region: "GB", wantErr: ErrInvalid, reason: "too short"},
		{name: "too long", in: "07400 1234567", region: "GB", wantErr: ErrInvalid, reason: "too long"},
		{name: "drama range is not valid", in: "07700 900123", region: "GB", wantErr: ErrInvalid, reason: "numbering plan"},
		{name: "national without region", in: "07400 123456", wantErr: ErrInvalid, reason: "country code"},
		{name: "IDD without region", in: "0044 7400 123456", wantErr: ErrInvalid, reason: "country code"},
		{name: "unknown country code", in: "+999 123456789", wantErr: ErrInvalid, reason: "country code"},
		{name: "unknown region", in: "07400 123456", region: "XX", wantErr: ErrInvalid, reason: "region"},
		{name: "extension", in: "+44 7400 123456 ext. 12", wantErr: ErrInvalid, reason: "extension"},
		{name: "only plus", in: "+", wantErr: ErrInvalid},
		{name: "huge input", in: strings.Repeat("1", 1000), region: "GB", wantErr: ErrInvalid, reason: "longer than"},

		{name: "GB fixed line", in: "020 7946 0000", region: "GB", wantErr: ErrNotMobile, reason: "fixed-line"},
		{name: "GB premium rate", in: "0909 879 0000", region: "GB", wantErr: ErrNotMobile, reason: "premium-rate"},
		{name: "GB toll free", in: "0800 123 4567", region: "GB", wantErr: ErrNotMobile, reason: "toll-free"},
		{name: "GB VoIP", in: "056 1234 5678", region: "GB", wantErr: ErrNotMobile, reason: "VoIP"},
		{name: "US toll free", in: "+1 800 555 0123", wantErr: ErrNotMobile, reason: "toll-free"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Normalize(tt.in, tt.region)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Normalize(%q, %q) error: %v", tt.in, tt.region, err)
				}
				if got != tt.want {
					t.Fatalf("Normalize(%q, %q) = %q, want %q", tt.in, tt.region, got, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Normalize(%q, %q) = %q, %v; want error %v", tt.in, tt.region, got, err, tt.wantErr)
			}
			if got != "" {
				t.Errorf("Normalize returned %q together with an error", got)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not contain %q", err, tt.reason)
			}
			if other := otherSentinel(tt.wantErr); errors.Is(err, other) {
				t.Errorf("error %v wraps both sentinels", err)
			}
		})
	}
}

func otherSentinel(err error) error {
	if err == ErrInvalid {
		return ErrNotMobile
	}
	return ErrInvalid
}

func TestNormalizeErrorDoesNotLeakNumber(t *testing.T) {
	t.Parallel()
	_, err := Normalize("020 7946 0000", "GB")
	if err == nil || strings.Contains(err.Error(), "7946") {
		t.Fatalf("error %v should not repeat the number", err)
	}
}

func TestMask(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"+447400123456", "+44******3456"},
		{"+12015550123", "+1******0123"},
		{"+4915123456789", "+49*******6789"},
		{"+35312345678", "+353****5678"}, // Ireland: three-digit country code
		{"+80012345678", "+800****5678"}, // non-geographic
		{"+44123", "+**123"},             // short: at least a third is hidden
		{"+4412", "+4*12"},
		{"07400123456", "*******3456"}, // not E.164: only the tail survives
		{"1234", "****"},
		{"12345", "***45"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Mask(tt.in); got != tt.want {
			t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if len(Mask(tt.in)) != len(tt.in) {
			t.Errorf("Mask(%q) changed the length", tt.in)
		}
	}
}

func TestIsE164(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"+447400123456":     true,
		"+1":                false,
		"+12":               true,
		"447400123456":      false,
		"+0447400123456":    false,
		"+44 7400 123456":   false,
		"+1234567890123456": false, // 16 digits
		"+123456789012345":  true,  // 15 digits
		"":                  false,
	} {
		if got := IsE164(in); got != want {
			t.Errorf("IsE164(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzNormalize checks that Normalize never panics, that every refusal wraps
// one of the sentinels with a reason, and that every success is E.164 and a
// fixed point.
func FuzzNormalize(f *testing.F) {
	seeds := []struct{ in, region string }{
		{"07400 123456", "GB"},
		{"+44 7400 123456", ""},
		{"0044 7400 123456", "GB"},
		{"+44 (0)7400 123456", "GB"},
		{"020 7946 0000", "GB"},
		{"0909 879 0000", "GB"},
		{"07700 900123", "GB"},
		{"(201) 555-0123", "US"},
		{"+1 800 555 0123", "US"},
		{"+49 1512 3456789", "DE"},
		{"+44 7400 123456 ext. 12", ""},
		{"tel:+447400123456;phone-context=+44", ""},
		{"0044", "GB"},
		{"+", ""},
		{"", ""},
		{"+٤٤٧٤٠٠١٢٣٤٥٦", ""}, // Arabic-Indic digits
		{"07400 123456", "ZZ"},
		{"+800 1234 5678", "001"},
		{"\x00\xff+44", "GB"},
	}
	for _, s := range seeds {
		f.Add(s.in, s.region)
	}
	f.Fuzz(func(t *testing.T, in, region string) {
		out, err := Normalize(in, region)
		if err != nil {
			if out != "" {
				t.Fatalf("Normalize(%q, %q) = %q with error %v", in, region, out, err)
			}
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotMobile) {
				t.Fatalf("Normalize(%q, %q): error %v wraps no sentinel", in, region, err)
			}
			msg := err.Error()
			if msg == ErrInvalid.Error() || msg == ErrNotMobile.Error() || !strings.Contains(msg, ": ") {
				t.Fatalf("Normalize(%q, %q): error %q gives no reason", in, region, msg)
			}
			return
		}
		if !IsE164(out) {
			t.Fatalf("Normalize(%q, %q) = %q, not E.164", in, region, out)
		}
		// A fixed point, whatever region the second call assumes.
		for _, r := range []string{region, "", "US"} {
			if again, err := Normalize(out, r); err != nil || again != out {
				t.Fatalf("Normalize(%q, %q) = %q, %v; want %q (first call: %q, %q)", out, r, again, err, out, in, region)
			}
		}
		if m := Mask(out); len(m) != len(out) || m[len(m)-4:] != out[len(out)-4:] || !strings.Contains(m, "*") {
			t.Fatalf("Mask(%q) = %q", out, m)
		}
	})
}
