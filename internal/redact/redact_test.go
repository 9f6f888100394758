package redact_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/redact"
)

func TestEmail(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"jane@example.org":              "j***@example.org",
		"manager@oakview-care.example":  "m***@oakview-care.example",
		"@example.org":                  "***@example.org",
		"not-an-address":                "********",
		"":                              "",
		"first.last+tag@sub.example.uk": "f***@sub.example.uk",
	} {
		if got := redact.Email(in); got != want {
			t.Errorf("Email(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPhone(t *testing.T) {
	t.Parallel()
	got := redact.Phone("+447400123456")
	if strings.Contains(got, "7400123") || !strings.HasPrefix(got, "+44") || !strings.HasSuffix(got, "3456") {
		t.Errorf("Phone = %q, want +44…3456 with the middle masked", got)
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"send to jane@example.org failed", "send to j***@example.org failed"},
		{"550 5.1.1 <bob@corp.example>: user unknown", "550 5.1.1 <b***@corp.example>: user unknown"},
		{"a@b.example, c@d.example", "a***@b.example, c***@d.example"},
		{"ops@localhost", "o***@localhost"},
		{"text to +447400123456 refused", "text to +44******3456 refused"},
		{`{"to":"+447400123457"}`, `{"to":"+44******3457"}`},
		{"tel:+14155550123", "tel:+1******0123"},
		// Not phone numbers: part of a longer number or a word, or too short.
		{"id x+447400123456 and 1+447400123456", "id x+447400123456 and 1+447400123456"},
		{"+4474001234567890123", "+4474001234567890123"},
		{"offset +0100 and +12345", "offset +0100 and +12345"},
		// URL passwords go; user names stay.
		{"dial smtp://alerts:hunter2@smtp.example.org:587", "dial smtp://alerts:***@smtp.example.org:587"},
		{"postgres://postgres@127.0.0.1:5432/crier_dev", "postgres://postgres@127.0.0.1:5432/crier_dev"},
		{"postgres://crier:s3cret@db/crier?sslmode=disable", "postgres://crier:***@db/crier?sslmode=disable"},
		{"nothing here", "nothing here"},
		// Already masked values stay as they are.
		{"j***@example.org +44******3456", "j***@example.org +44******3456"},
	} {
		if got := redact.String(tc.in); got != tc.want {
			t.Errorf("String(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestSecretKey(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]bool{
		"token": true, "api_token": true, "Authorization": true, "password": true, "auth_token": true,
		"CRIER_TOKEN_SECRET": true, "client_secret": true, "set-cookie": true,
		"event_id": false, "channel": false, "error": false, "to": false,
	} {
		if got := redact.SecretKey(key); got != want {
			t.Errorf("SecretKey(%q) = %t, want %t", key, got, want)
		}
	}
}

type recipient struct {
	Name  string
	Email string
}

type lazy struct{}

func (lazy) LogValue() slog.Value { return slog.StringValue("lazy jane@example.org") }

// TestHandler logs through the handler into JSON and checks that nothing
// personal or secret comes out, whatever shape the value has.
func TestHandler(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(redact.NewHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	wrapped := fmt.Errorf("send delivery 7: %w", errors.New("550 <bob@corp.example> no such user"))
	log = log.With("subscriber", "alice@example.org", slog.Group("twilio", "auth_token", "tok_live_abcdef", "to", "+447400123456"))
	log.Info("sending to carol@example.org and +447400123457",
		"error", wrapped,
		"password", "hunter2",
		"authorization", "Bearer abc.def.ghi",
		"api_token", "",
		"recipient", recipient{Name: "Dan", Email: "dan@example.org"},
		"list", []string{"eve@example.org", "+14155550123"},
		"lazy", lazy{},
		"count", 3,
		"database", "postgres://crier:s3cret@db:5432/crier",
		slog.Group("outer", slog.Group("inner", "email", "frank@example.org")),
	)
	log.WithGroup("g").Debug("grouped", "to", "grace@example.org")

	out := buf.String()
	for _, leak := range []string{
		"alice@", "bob@", "carol@", "dan@", "eve@", "frank@", "grace@", "jane@",
		"7400123456", "7400123457", "4155550123", "hunter2", "tok_live", "abc.def", "s3cret",
	} {
		if strings.Contains(out, leak) {
			t.Errorf("log output contains %q:\n%s", leak, out)
		}
	}
	for _, want := range []string{
		"a***@example.org", "b***@corp.example", "c***@example.org", "d***@example.org", "e***@example.org",
		"f***@example.org", "g***@example.org", "j***@example.org", "+44******3456", "+44******3457",
		`"password":"[REDACTED]"`, `"authorization":"[REDACTED]"`, `"auth_token":"[REDACTED]"`, `"api_token":""`,
		`"count":3`, "send delivery 7", "postgres://crier:***@db:5432/crier",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %q:\n%s", want, out)
		}
	}
	// The output is still one valid JSON object per line, groups intact.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2", len(lines))
	}
	var rec struct {
		Outer struct {
			Inner struct{ Email string }
		}
		Twilio struct{ To string }
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Outer.Inner.Email != "f***@example.org" || rec.Twilio.To != "+44******3456" {
		t.Errorf("groups: %+v", rec)
	}
}

func TestHandlerEnabled(t *testing.T) {
	t.Parallel()
	h := redact.NewHandler(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelError) {
		t.Error("Enabled does not follow the wrapped handler")
	}
}

func BenchmarkHandler(b *testing.B) {
	log := slog.New(redact.NewHandler(slog.NewJSONHandler(&bytes.Buffer{}, nil)))
	for b.Loop() {
		log.Info("event fanned out", "event_id", "2025-11-10-atlas-sync-0001", "queued_email", 120, "queued_sms", 80, "error", errors.New("dial tcp 10.0.0.1:25: i/o timeout"))
	}
}

func TestURLs(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                             "nats://127.0.0.1:4222",
		"nats://user:secret@n1:4222,nats://TOKEN@n2:4222":   "nats://user:***@n1:4222,nats://***@n2:4222",
		"postgres://crier:pw@db:5432/crier?sslmode=require": "postgres://crier:***@db:5432/crier?sslmode=require",
		"nats://%zz@bad":                                    "(unreadable URL)",
	} {
		if got := redact.URLs(in); got != want {
			t.Errorf("URLs(%q) = %q, want %q", in, got, want)
		}
	}
}
