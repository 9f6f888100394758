// Package hooktest is a stand-in for the services crier posts JSON to, for
// tests: a subscriber's webhook endpoint (checking the Standard Webhooks
// signature), a Microsoft Teams incoming webhook or Workflows URL
// (checking the Adaptive Card) and a Slack incoming webhook (checking the
// Block Kit blocks). The checks are written from the providers'
// documentation: Adaptive Cards schema 1.5
// (https://adaptivecards.io/explorer/), Teams' webhook message format
// (https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using),
// Slack's Block Kit reference (https://api.slack.com/reference/block-kit/blocks)
// and incoming webhook errors (https://api.slack.com/messaging/webhooks#handling_errors).
package hooktest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Kind is the service a Server stands in for.
type Kind int

const (
	Webhook Kind = iota // a Standard Webhooks receiver
	Teams               // a Teams Workflows URL
	Slack               // a Slack incoming webhook
)

// Received is one request the server accepted or refused.
type Received struct {
	Path   string
	Header http.Header
	Body   []byte
	// Problem is why the server refused the request ("" when accepted).
	Problem string
}

// Server is an HTTPS server answering as the service does.
type Server struct {
	*httptest.Server
	kind   Kind
	secret []byte // Webhook: the key signatures are checked with

	mu    sync.Mutex
	got   []Received
	force map[string]int // path -> status to answer regardless
}

// New starts a server of kind; a Webhook server checks signatures with
// the secret given to SetSecret (and refuses every request before). It
// stops when the test ends.
func New(t testing.TB, kind Kind) *Server {
	t.Helper()
	s := &Server{kind: kind, force: map[string]int{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// SetSecret sets the whsec_ secret signatures are checked with.
func (s *Server) SetSecret(secret string) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") || len(key) == 0 {
		return fmt.Errorf("hooktest: secret %q is not whsec_ and base64", secret)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secret = key
	return nil
}

// CertificatePEM writes the server's certificate (the same for every
// httptest server) as PEM to path, for a process to trust through
// SSL_CERT_FILE.
func (s *Server) CertificatePEM(path string) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600)
}

// Answer makes the server answer requests to path with status (0: as the
// service would).
func (s *Server) Answer(path string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.force[path] = status
}

// Requests returns what the server received, in order.
func (s *Server) Requests() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.got...)
}

// Accepted returns the requests the server accepted.
func (s *Server) Accepted() []Received {
	var out []Received
	for _, r := range s.Requests() {
		if r.Problem == "" {
			out = append(out, r)
		}
	}
	return out
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := Received{Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	if err == nil {
		err = s.check(r, body)
	}
	if err != nil {
		rec.Problem = err.Error()
	}
	s.mu.Lock()
	forced := s.force[r.URL.Path]
	s.got = append(s.got, rec)
	s.mu.Unlock()
	switch {
	case forced != 0:
		w.WriteHeader(forced)
	case err != nil && s.kind == Slack:
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "invalid_blocks")
	case err != nil && s.kind == Teams:
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "Bad payload received by generic incoming webhook.")
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
	case s.kind == Slack:
		_, _ = io.WriteString(w, "ok")
	case s.kind == Teams:
		w.WriteHeader(http.StatusAccepted)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) check(r *http.Request, body []byte) error {
	if r.Method != http.MethodPost {
		return fmt.Errorf("method %s, want POST", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("Content-Type %q, want application/json", ct)
	}
	switch s.kind {
	case Webhook:
		if err := s.checkSignature(r.Header, body); err != nil {
			return err
		}
		if !json.Valid(body) {
			return errors.New("body is not JSON")
		}
		return nil
	case Teams:
		return CheckTeamsMessage(body)
	default:
		return CheckSlackMessage(body)
	}
}

// checkSignature verifies webhook-signature as the specification says:
// HMAC-SHA256 of "id.timestamp.body", base64, after "v1,", one of several
// space-separated signatures, with a timestamp within five minutes.
func (s *Server) checkSignature(h http.Header, body []byte) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("webhook-id, webhook-timestamp and webhook-signature are required")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not Unix seconds", ts)
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("webhook-timestamp is %s away", d)
	}
	s.mu.Lock()
	key := s.secret
	s.mu.Unlock()
	if key == nil {
		return errors.New("no secret set")
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%s.", id, ts)
	m.Write(body)
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, sig := range strings.Fields(sigs) {
		if v, ok := strings.CutPrefix(sig, "v1,"); ok && hmac.Equal([]byte(v), []byte(want)) {
			return nil
		}
	}
	return errors.New("no webhook-signature verifies")
}
