package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/compose"
	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/httpapi"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/stream"
	"github.com/crier-dev/crier/internal/testkit/natstest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
	"github.com/crier-dev/crier/internal/token"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// apiToken is the bearer token every test server accepts.
const apiToken = "test-token-7f3a9c0e51d24b68"

// bundle is one test's crier HTTP server and what it talks to.
type bundle struct {
	store    *store.Store
	nats     *natstest.Server
	js       jetstream.JetStream
	signer   *token.Signer
	composer *compose.Composer
	api      *httpapi.API
	srv      *httptest.Server
	url      string
	email    *recorder
	sms      *recorder
	now      *clock
	logs     *syncBuffer
	// secrets must never appear in the logs; checked when the test ends.
	secrets []string
}

type setupOptions struct {
	cfg     httpapi.Config
	senders map[string]deliver.Sender // nil: recorders for both channels
	tls     bool
}

// setup gives a test its own database with the example catalog, its own
// embedded NATS with the INCIDENTS stream, and an httptest server running
// the API with recording senders (unless opts say otherwise).
func setup(t *testing.T, opts ...func(*setupOptions)) *bundle {
	t.Helper()
	var o setupOptions
	for _, f := range opts {
		f(&o)
	}
	ctx := context.Background()
	b := &bundle{store: pgtest.NewStore(t), nats: natstest.New(t), email: &recorder{}, sms: &recorder{}, now: &clock{}, logs: &syncBuffer{}}
	if err := example.Load(ctx, b.store, example.Components(), nil); err != nil {
		t.Fatal(err)
	}
	nc, err := stream.Connect(b.nats.URL(), "httpapi test", stream.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if b.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Ensure(ctx, b.js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if b.signer, err = token.NewSigner(key); err != nil {
		t.Fatal(err)
	}

	if o.tls {
		b.srv = httptest.NewUnstartedServer(nil)
		b.url = "https://" + b.srv.Listener.Addr().String()
	} else {
		b.srv = httptest.NewUnstartedServer(nil)
		b.url = "http://" + b.srv.Listener.Addr().String()
	}
	b.composer = compose.New(compose.Config{PublicURL: b.url}, b.store, nil, b.signer)
	senders := o.senders
	if senders == nil {
		senders = map[string]deliver.Sender{deliver.ChannelEmail: b.email, deliver.ChannelSMS: b.sms}
	}
	cfg := o.cfg
	cfg.APITokens = append([]string{apiToken}, cfg.APITokens...)
	cfg.PublicURL = b.url
	if cfg.Now == nil {
		cfg.Now = b.now.Now
	}
	log := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b.api, err = httpapi.New(cfg, httpapi.Deps{
		Store: b.store, JetStream: b.js, Signer: b.signer, Links: b.composer, Senders: senders, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.srv.Config.Handler = b.api.Handler()
	if o.tls {
		b.srv.StartTLS()
	} else {
		b.srv.Start()
	}
	t.Cleanup(b.srv.Close)
	b.secret(apiToken)
	t.Cleanup(func() {
		logs := b.logs.String()
		for _, s := range b.secrets {
			if s != "" && strings.Contains(logs, s) {
				t.Errorf("the logs hold %q in full:\n%s", s, logs)
			}
		}
	})
	return b
}

// secret registers values that must not appear in the logs.
func (b *bundle) secret(s ...string) { b.secrets = append(b.secrets, s...) }

// client returns an HTTP client that does not follow redirects and trusts
// the test server.
func (b *bundle) client() *http.Client {
	c := b.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v\n%s", a.status, err, a.body)
	}
	return m
}

func (a answer) String() string { return string(a.body) }

// page is the body with HTML character references resolved (html/template
// writes "+" as "&#43;").
func (a answer) page() string { return html.UnescapeString(string(a.body)) }

// request sends one request; hdr holds header pairs. An exchange with the
// /v1 API is checked against the OpenAPI document (checkContract).
func (b *bundle) request(t *testing.T, method, path string, body io.Reader, hdr ...string) answer {
	t.Helper()
	var reqBody []byte
	if body != nil {
		var err error
		if reqBody, err = io.ReadAll(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, b.url+path, bytes.NewReader(reqBody))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body, req.ContentLength = nil, 0
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	checkContract(t, method, b.url+path, req.Header, reqBody, resp.StatusCode, resp.Header, raw)
	return answer{status: resp.StatusCode, header: resp.Header, body: raw}
}

// call sends an authenticated API request with a JSON (or other) body.
func (b *bundle) call(t *testing.T, method, path, body string) answer {
	t.Helper()
	var r io.Reader
	hdr := []string{"Authorization", "Bearer " + apiToken}
	if body != "" {
		r = strings.NewReader(body)
		hdr = append(hdr, "Content-Type", "application/json")
	}
	return b.request(t, method, path, r, hdr...)
}

// post sends a form as a browser on the same site would.
func (b *bundle) post(t *testing.T, path string, form url.Values, hdr ...string) answer {
	t.Helper()
	hdr = append([]string{"Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "same-origin", "Origin", b.url}, hdr...)
	return b.request(t, http.MethodPost, path, strings.NewReader(form.Encode()), hdr...)
}

func (b *bundle) get(t *testing.T, path string, hdr ...string) answer {
	t.Helper()
	return b.request(t, http.MethodGet, path, nil, hdr...)
}

func expectStatus(t *testing.T, a answer, want int) {
	t.Helper()
	if a.status != want {
		t.Fatalf("status %d, want %d; body:\n%s", a.status, want, a.body)
	}
}

// expectError checks an API error answer: status, and the field named.
func expectError(t *testing.T, a answer, status int, field string) {
	t.Helper()
	expectStatus(t, a, status)
	m := a.json(t)
	if msg, _ := m["error"].(string); msg == "" {
		t.Errorf("no error message in %s", a.body)
	}
	if got, _ := m["field"].(string); got != field {
		t.Errorf("field %q, want %q (%s)", got, field, a.body)
	}
}

// recorder is a deliver.Sender that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []deliver.Message
	err  error
}

func (r *recorder) Send(_ context.Context, m deliver.Message) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return "", r.err
	}
	r.msgs = append(r.msgs, m)
	return "provider-" + m.To, nil
}

func (r *recorder) sent() []deliver.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]deliver.Message(nil), r.msgs...)
}

func (r *recorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// clock is a time source tests can move forward.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// subscriber creates a subscriber directly in the store.
func (b *bundle) subscriber(t *testing.T, n store.NewSubscriber) int64 {
	t.Helper()
	id, err := b.store.CreateSubscriber(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	b.secret(n.Email, n.Phone)
	return id
}

func (b *bundle) getSubscriber(t *testing.T, id int64) store.Subscriber {
	t.Helper()
	s, err := b.store.GetSubscriber(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// manageToken and unsubscribeToken are the tokens in the links of every
// message (compose.ManageURL, compose.UnsubscribeURL).
func (b *bundle) manageToken(id int64) string {
	return strings.TrimPrefix(b.composer.ManageURL(id), b.url+"/manage/")
}

func (b *bundle) unsubscribeToken(id int64, channel string) string {
	return strings.TrimPrefix(b.composer.UnsubscribeURL(id, channel), b.url+"/unsubscribe/")
}
