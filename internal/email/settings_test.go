package email_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/email"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw  string
		want email.Settings
	}{
		{"smtp://user:pass@smtp.example.org:587",
			email.Settings{Host: "smtp.example.org", Port: 587, Username: "user", Password: "pass", Security: email.STARTTLS}},
		{"smtp://user:pass@smtp.example.org",
			email.Settings{Host: "smtp.example.org", Port: 587, Username: "user", Password: "pass"}},
		{"smtp://smtp.example.org:2525?tls=starttls",
			email.Settings{Host: "smtp.example.org", Port: 2525}},
		{"smtps://user:pass@smtp.example.org:465",
			email.Settings{Host: "smtp.example.org", Port: 465, Username: "user", Password: "pass", Security: email.ImplicitTLS}},
		{"SMTPS://smtp.example.org",
			email.Settings{Host: "smtp.example.org", Port: 465, Security: email.ImplicitTLS}},
		{"smtps://smtp.example.org?tls=tls",
			email.Settings{Host: "smtp.example.org", Port: 465, Security: email.ImplicitTLS}},
		{"smtp://localhost:1025?tls=none",
			email.Settings{Host: "localhost", Port: 1025, Security: email.NoTLS}},
		{"smtp://127.0.0.1:1025/?TLS=NONE&tls=none",
			email.Settings{}}, // error: tls twice (keys are case-sensitive: TLS is unknown)
		{"smtp://apikey:p%40ss%3Aw%2Fd%20x@[::1]:25",
			email.Settings{Host: "::1", Port: 25, Username: "apikey", Password: "p@ss:w/d x"}},
		{"smtp://user%2Bcrier%40example.org@smtp.example.org",
			email.Settings{Host: "smtp.example.org", Port: 587, Username: "user+crier@example.org"}},
		{"  smtp://smtp.example.org  ", email.Settings{Host: "smtp.example.org", Port: 587}},
		{"smtp://smtp.example.org?pipelining=off",
			email.Settings{Host: "smtp.example.org", Port: 587, NoPipelining: true}},
		{"smtps://smtp.example.org?chunking=OFF&pipelining=on",
			email.Settings{Host: "smtp.example.org", Port: 465, Security: email.ImplicitTLS, NoChunking: true}},
	} {
		got, err := email.ParseURL(tc.raw)
		if tc.want == (email.Settings{}) {
			if err == nil {
				t.Errorf("ParseURL(%q) = %v, want an error", tc.raw, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseURL(%q) = %#v, %v; want %#v", tc.raw, got, err, tc.want)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ raw, want string }{
		{"", "no scheme"},
		{"smtp.example.org:587", "unsupported scheme"},
		{"http://smtp.example.org", `unsupported scheme "http"`},
		{"smtp://", "missing host"},
		{"smtp://:587", "missing host"},
		{"smtp://user:secret@", "missing host"},
		{"smtp://smtp.example.org:0", `bad port "0"`},
		{"smtp://smtp.example.org:65536", `bad port "65536"`},
		{"smtp://smtp.example.org:smtp", "port"},
		{"smtp://smtp.example.org:", "empty port"},
		{"smtp://smtp.example.org?tls=yes", `unknown tls value "yes"`},
		{"smtp://smtp.example.org?tls=tls", `unknown tls value "tls"`},
		{"smtps://smtp.example.org?tls=none", "cannot have tls=none"},
		{"smtps://smtp.example.org?tls=starttls", `unknown tls value "starttls"`},
		{"smtp://smtp.example.org?tls=none&tls=none", "tls given 2 times"},
		{"smtp://smtp.example.org?insecure=1", `unknown parameter "insecure"`},
		{"smtp://smtp.example.org?pipelining=no", `unknown pipelining value "no" (want on or off)`},
		{"smtp://smtp.example.org?chunking=off&chunking=on", "chunking given 2 times"},
		{"smtp://smtp.example.org/relay", "unexpected path"},
		{"smtp:smtp.example.org", "want smtp://host"},
		{"smtp://user:secret%zz@smtp.example.org", "invalid"},
		{"smtp://user:sec ret\n@smtp.example.org", "invalid"},
	} {
		_, err := email.ParseURL(tc.raw)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded, want an error with %q", tc.raw, tc.want)
			continue
		}
		if !errors.Is(err, email.ErrBadURL) {
			t.Errorf("ParseURL(%q): %v does not wrap ErrBadURL", tc.raw, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURL(%q): %q, want it to say %q", tc.raw, err, tc.want)
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "sec ret") {
			t.Errorf("ParseURL(%q): error %q shows the password", tc.raw, err)
		}
	}
}

func TestSettingsMaskPassword(t *testing.T) {
	t.Parallel()
	s, err := email.ParseURL("smtp://crier:hunter2%40x@smtp.example.org:587")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "smtp://crier:xxxxx@smtp.example.org:587"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("smtp", "settings", s)
	cfg := email.Config{Settings: s, From: "status@example.org"}
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s),
		fmt.Sprintf("%v %+v", cfg, cfg), fmt.Sprintf("%v", &s),
		logged.String(),
	} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("password shown: %s", out)
		}
	}
	if !strings.Contains(logged.String(), "settings.host=smtp.example.org") ||
		!strings.Contains(logged.String(), "settings.password_set=true") {
		t.Errorf("log line %q", logged.String())
	}
	for raw, want := range map[string]string{
		"smtps://smtp.example.org":                         "smtps://smtp.example.org:465",
		"smtp://u@localhost:1025?tls=none":                 "smtp://u@localhost:1025?tls=none",
		"smtp://[::1]:25":                                  "smtp://[::1]:25",
		"smtp://h:25?tls=none&chunking=off&pipelining=off": "smtp://h:25?chunking=off&pipelining=off&tls=none",
	} {
		s, err := email.ParseURL(raw)
		if err != nil {
			t.Fatal(err)
		}
		if s.String() != want {
			t.Errorf("ParseURL(%q).String() = %q, want %q", raw, s.String(), want)
		}
		if back, err := email.ParseURL(s.String()); err != nil || back != s {
			t.Errorf("String() does not parse back: %v %v", back, err)
		}
	}
}

func ExampleParseURL() {
	s, err := email.ParseURL("smtp://crier:p%40ss@smtp.example.org")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Host, s.Port, s.Security, s.Password)
	fmt.Println(s)

	_, err = email.ParseURL("smtp://smtp.example.org?tls=off")
	fmt.Println(err)
	// Output:
	// smtp.example.org 587 starttls p@ss
	// smtp://crier:xxxxx@smtp.example.org:587
	// invalid SMTP URL: unknown tls value "off" for smtp:// (want starttls or none)
}
