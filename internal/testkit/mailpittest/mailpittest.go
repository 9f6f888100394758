// Package mailpittest runs a real Mailpit SMTP server for end-to-end tests
// and reads what it received through Mailpit's HTTP API. Mailpit must be
// installed (go install github.com/axllent/mailpit@v1.33.1): a missing
// binary fails the test rather than skipping it.
package mailpittest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Server is a running Mailpit.
type Server struct {
	SMTPPort int
	HTTPURL  string
	cmd      *exec.Cmd
	stopped  sync.Once
}

// Stop ends Mailpit (also done when the test ends).
func (s *Server) Stop() {
	s.stopped.Do(func() { _ = s.cmd.Process.Kill(); _ = s.cmd.Wait() })
}

// Binary finds the mailpit executable on PATH or in $GOPATH/bin.
func Binary() (string, error) {
	if p, err := exec.LookPath("mailpit"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	p := filepath.Join(gopath, "bin", "mailpit")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("mailpit not found on PATH or in %s: install it with go install github.com/axllent/mailpit@v1.33.1", filepath.Dir(p))
	}
	return p, nil
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Options choose how Mailpit runs; the zero value is Start's.
type Options struct {
	// SMTPPort is the SMTP port; 0 picks a free one. A test restarts
	// Mailpit on the port of an earlier one to change how it serves.
	SMTPPort int
	// TLSCert and TLSKey, PEM files, make Mailpit offer STARTTLS.
	TLSCert, TLSKey string
}

// Start runs Mailpit on free loopback ports, keeping every message, until
// the test ends.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	smtpPort, httpPort := o.SMTPPort, freePort(t)
	if smtpPort == 0 {
		smtpPort = freePort(t)
	}
	args := []string{
		"--smtp", "127.0.0.1:" + strconv.Itoa(smtpPort),
		"--listen", "127.0.0.1:" + strconv.Itoa(httpPort),
		"--max", "0", "--smtp-auth-accept-any", "--smtp-auth-allow-insecure",
		"--database", filepath.Join(t.TempDir(), "mailpit.db"),
	}
	if o.TLSCert != "" {
		args = append(args, "--smtp-tls-cert", o.TLSCert, "--smtp-tls-key", o.TLSKey)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mailpit: %v", err)
	}
	s := &Server{SMTPPort: smtpPort, HTTPURL: "http://127.0.0.1:" + strconv.Itoa(httpPort), cmd: cmd}
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.HTTPURL + "/api/v1/info")
		if err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(smtpPort)); err == nil {
				c.Close()
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpit did not start on %d/%d", smtpPort, httpPort)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SMTPURL is the CRIER_SMTP_URL for this Mailpit (plain SMTP, local only).
func (s *Server) SMTPURL() string {
	return "smtp://127.0.0.1:" + strconv.Itoa(s.SMTPPort) + "?tls=none"
}

// Address is a mailbox in a Mailpit message.
type Address struct {
	Name    string
	Address string
}

// Summary is a message in Mailpit's list.
type Summary struct {
	ID        string
	MessageID string
	From      Address
	To        []Address
	Subject   string
}

// Message is one message with its parts.
type Message struct {
	Summary
	Text string
	HTML string
}

// Messages lists every message Mailpit holds.
func (s *Server) Messages(ctx context.Context) ([]Summary, error) {
	var all []Summary
	for start := 0; ; {
		var page struct {
			Total    int
			Messages []Summary
		}
		if err := s.get(ctx, fmt.Sprintf("/api/v1/messages?start=%d&limit=500", start), &page); err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		start += len(page.Messages)
		if len(page.Messages) == 0 || start >= page.Total {
			return all, nil
		}
	}
}

// Message returns one message with its text and HTML parts.
func (s *Server) Message(ctx context.Context, id string) (Message, error) {
	var m Message
	err := s.get(ctx, "/api/v1/message/"+url.PathEscape(id), &m)
	return m, err
}

// Headers returns one message's headers.
func (s *Server) Headers(ctx context.Context, id string) (map[string][]string, error) {
	h := map[string][]string{}
	err := s.get(ctx, "/api/v1/message/"+url.PathEscape(id)+"/headers", &h)
	return h, err
}

func (s *Server) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.HTTPURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("mailpit %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("mailpit %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
