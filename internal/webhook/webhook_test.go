package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/deliver/sendertest"
	"github.com/crier-dev/crier/internal/testkit/dnstest"
	"github.com/crier-dev/crier/internal/testkit/npmtest"
	"github.com/crier-dev/crier/internal/testkit/tcpproxy"
	"github.com/crier-dev/crier/internal/webhook"
)

// peer is a subscriber's HTTPS endpoint: it records what it is sent and
// answers each path as told.
type peer struct {
	srv   *httptest.Server
	proxy *tcpproxy.Proxy
	dns   *dnstest.Server
	mu    sync.Mutex
	got   []request
	codes map[string]int // path -> status to answer (default 204)
	hdrs  map[string]http.Header
}

type request struct {
	Path   string
	Header http.Header
	Body   []byte
}

func newPeer(t *testing.T) *peer {
	p := &peer{codes: map[string]int{}, hdrs: map[string]http.Header{}}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		code, ok := p.codes[r.URL.Path]
		if !ok {
			code = http.StatusNoContent
		}
		for k, v := range p.hdrs[r.URL.Path] {
			w.Header()[k] = v
		}
		p.got = append(p.got, request{r.URL.Path, r.Header.Clone(), body})
		p.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(p.srv.Close)
	p.proxy = tcpproxy.New(t, p.srv.Listener.Addr().String())
	p.dns = dnstest.New(t)
	// httptest's certificate is for example.com: the name resolves to the
	// loopback address the proxy listens on.
	p.dns.Set("example.com", netip.MustParseAddr("127.0.0.1"))
	return p
}

// url is the https URL of path on the peer, through the proxy.
func (p *peer) url(path string) string {
	return fmt.Sprintf("https://example.com:%d%s", p.proxy.Port(), path)
}

// sender returns a sender that trusts the peer's certificate and resolves
// through its DNS server; allow lists the private addresses it may call
// (by default the proxy's).
func (p *peer) sender(t *testing.T, allow ...string) *webhook.Sender {
	if allow == nil {
		allow = []string{"127.0.0.1:" + strconv.Itoa(p.proxy.Port())}
	}
	a, err := webhook.ParseAllow(strings.Join(allow, ","))
	if err != nil {
		t.Fatal(err)
	}
	s := webhook.New(webhook.Config{Allow: a, Signed: true, RootCAs: p.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs,
		Resolver: p.dns.Resolver(), Timeout: 3 * time.Second})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (p *peer) requests() []request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]request(nil), p.got...)
}

func (p *peer) answer(path string, code int, hdr ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.codes[path] = code
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	p.hdrs[path] = h
}

var secret = webhook.NewSecret()

func message(p *peer, i int) deliver.Message {
	return deliver.Message{
		DeliveryID: int64(1000 + i), Channel: deliver.ChannelWebhook, To: p.url("/hook/" + strconv.Itoa(i)),
		Body: []byte(fmt.Sprintf(`{"type":"incident.updated","n":%d,"text":"Sync Pod A – use Pod B"}`, i)), Secret: secret,
	}
}

// TestConformance runs the senders' suite signed (the webhook channel)
// and unsigned (teams, slack).
func TestConformance(t *testing.T) {
	for _, signed := range []bool{true, false} {
		t.Run(map[bool]string{true: "Signed", false: "Unsigned"}[signed], func(t *testing.T) { conformance(t, signed) })
	}
}

func conformance(t *testing.T, signed bool) {
	sendertest.Run(t, func(t *testing.T) sendertest.Harness {
		p := newPeer(t)
		s := p.sender(t)
		if !signed {
			s = webhook.New(webhook.Config{Allow: mustAllow(t, "127.0.0.1:"+strconv.Itoa(p.proxy.Port())),
				RootCAs: p.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, Resolver: p.dns.Resolver(), Timeout: 3 * time.Second})
			t.Cleanup(func() { _ = s.Close() })
		}
		return sendertest.Harness{
			Sender: s,
			Message: func(i int) deliver.Message {
				m := message(p, i)
				if !signed {
					m.Secret = "" // Teams and Slack URLs carry no secret
				}
				return m
			},
			Received: func() int {
				n := 0
				p.mu.Lock()
				defer p.mu.Unlock()
				for _, r := range p.got {
					if c, ok := p.codes[r.Path]; !ok || c < 300 {
						n++
					}
				}
				return n
			},
			Refuse:   func(i int) { p.answer("/hook/"+strconv.Itoa(i), http.StatusBadRequest) },
			Throttle: func(i int) { p.answer("/hook/"+strconv.Itoa(i), http.StatusTooManyRequests, "Retry-After", "7") },
			Down:     p.proxy.SetDown,
		}
	})
}

// TestSignatureVerifiesWithStandardWebhooks: what crier sends verifies
// with the standardwebhooks package from npm (the specification's own
// JavaScript implementation), and a changed body or id does not.
func TestSignatureVerifiesWithStandardWebhooks(t *testing.T) {
	modules := npmtest.Dir(t, "standardwebhooks", "1.3.0")
	p := newPeer(t)
	s := p.sender(t)
	m := message(p, 3)
	id, err := s.Send(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	got := p.requests()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	r := got[0]
	if id != "1003" || r.Header.Get("webhook-id") != "1003" {
		t.Errorf("provider id %q, webhook-id %q; want the delivery id 1003", id, r.Header.Get("webhook-id"))
	}
	if sig := r.Header.Get("webhook-signature"); !strings.HasPrefix(sig, "v1,") {
		t.Errorf("webhook-signature %q", sig)
	}
	in, _ := json.Marshal(map[string]any{
		"secret": secret, "body": string(r.Body),
		"headers": map[string]string{
			"webhook-id": r.Header.Get("webhook-id"), "webhook-timestamp": r.Header.Get("webhook-timestamp"),
			"webhook-signature": r.Header.Get("webhook-signature"),
		},
	})
	out := npmtest.Node(t, modules, `
const { Webhook } = require("standardwebhooks");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const wh = new Webhook(input.secret);
const result = {};
result.payload = wh.verify(input.body, input.headers);
for (const [name, body, headers] of [
  ["body", input.body.replace("Pod B", "Pod C"), input.headers],
  ["id", input.body, {...input.headers, "webhook-id": "1004"}],
  ["secret", input.body, input.headers, true],
]) {
  try {
    (name === "secret" ? new Webhook("whsec_" + Buffer.from("another key of enough length").toString("base64")) : wh).verify(body, headers);
    result[name] = "accepted";
  } catch (e) { result[name] = "refused"; }
}
console.log(JSON.stringify(result));
`, string(in))
	var res struct {
		Payload          map[string]any
		Body, ID, Secret string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	if res.Payload["n"] != 3.0 || res.Payload["text"] != "Sync Pod A – use Pod B" {
		t.Errorf("standardwebhooks verified payload %v", res.Payload)
	}
	if res.Body != "refused" || res.ID != "refused" || res.Secret != "refused" {
		t.Errorf("tampered messages: body %s, id %s, secret %s; want all refused", res.Body, res.ID, res.Secret)
	}
	// A retry of the same delivery carries the same webhook-id.
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if got := p.requests(); got[1].Header.Get("webhook-id") != got[0].Header.Get("webhook-id") {
		t.Error("a retry has another webhook-id")
	}
}

// TestAnswers: each answer maps to the outcome the issue gives.
func TestAnswers(t *testing.T) {
	p := newPeer(t)
	s := p.sender(t)
	for _, c := range []struct {
		code       int
		hdr        []string
		want       string // sent, permanent, transient
		optOut     bool
		retryAfter time.Duration
	}{
		{200, nil, "sent", false, 0},
		{202, nil, "sent", false, 0},
		{204, nil, "sent", false, 0},
		{410, nil, "permanent", true, 0},
		{400, nil, "permanent", false, 0},
		{401, nil, "permanent", false, 0},
		{404, nil, "permanent", false, 0},
		{408, nil, "transient", false, 0},
		{429, []string{"Retry-After", "30"}, "transient", false, 30 * time.Second},
		{429, nil, "transient", false, 0},
		{500, nil, "transient", false, 0},
		{503, []string{"Retry-After", "120"}, "transient", false, 2 * time.Minute},
		{301, []string{"Location", "/elsewhere"}, "permanent", false, 0},
		{307, []string{"Location", "/elsewhere"}, "permanent", false, 0},
	} {
		path := fmt.Sprintf("/answer/%d/%d", c.code, len(c.hdr))
		p.answer(path, c.code, c.hdr...)
		m := message(p, 0)
		m.To = p.url(path)
		_, err := s.Send(context.Background(), m)
		var perm *deliver.PermanentError
		var tr *deliver.TransientError
		switch {
		case c.want == "sent" && err != nil:
			t.Errorf("%d: %v, want sent", c.code, err)
		case c.want == "permanent" && (!errors.As(err, &perm) || perm.OptOut != c.optOut || perm.Code != strconv.Itoa(c.code)):
			t.Errorf("%d: %#v, want permanent (opt out %t)", c.code, err, c.optOut)
		case c.want == "transient" && (!errors.As(err, &tr) || tr.RetryAfter != c.retryAfter):
			t.Errorf("%d: %#v, want transient after %s", c.code, err, c.retryAfter)
		}
	}
	for _, r := range p.requests() {
		if r.Path == "/elsewhere" {
			t.Error("a redirect was followed")
		}
	}
	// A destination that never answers is retried, within the timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	silent := webhook.New(webhook.Config{Allow: mustAllow(t, ln.Addr().String()), Signed: true, Timeout: 300 * time.Millisecond, Resolver: p.dns.Resolver()})
	defer silent.Close()
	m := message(p, 0)
	m.To = "https://example.com:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + "/hook"
	start := time.Now()
	if _, err := silent.Send(context.Background(), m); !errors.As(err, new(*deliver.TransientError)) || time.Since(start) > 5*time.Second {
		t.Errorf("a silent destination: %v after %s, want transient within the timeout", err, time.Since(start))
	}
}

func mustAllow(t *testing.T, s string) webhook.Allow {
	a, err := webhook.ParseAllow(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAddressRules: only https, and no loopback, private, link-local or
// metadata destination unless allowed.
func TestAddressRules(t *testing.T) {
	deny := webhook.Allow{}
	for addr, want := range map[string]bool{
		"127.0.0.1:443": false, "127.8.9.10:443": false, "[::1]:443": false, "[::ffff:127.0.0.1]:443": false,
		"10.1.2.3:443": false, "172.16.0.1:443": false, "192.168.1.1:443": false, "[fc00::1]:443": false, "[fd12::1]:443": false,
		"169.254.169.254:80": false, "[fe80::1]:443": false, "0.0.0.0:443": false, "[::]:443": false, "100.64.0.1:443": false,
		"224.0.0.1:443": false, "192.0.2.1:443": false,
		"93.184.215.14:443": true, "8.8.8.8:443": true, "[2606:4700:4700::1111]:443": true,
	} {
		if got := deny.Permits(netip.MustParseAddrPort(addr)); got != want {
			t.Errorf("Permits(%s) = %t, want %t", addr, got, want)
		}
	}
	allow := mustAllow(t, "10.20.0.0/16, 192.168.7.7, 127.0.0.1:8443")
	for addr, want := range map[string]bool{
		"10.20.3.4:443": true, "10.21.0.1:443": false, "192.168.7.7:9999": true, "192.168.7.8:443": false,
		"127.0.0.1:8443": true, "127.0.0.1:8444": false, "169.254.169.254:80": false,
	} {
		if got := allow.Permits(netip.MustParseAddrPort(addr)); got != want {
			t.Errorf("with the allow list, Permits(%s) = %t, want %t", addr, got, want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "127.0.0.1:port"} {
		if _, err := webhook.ParseAllow(bad); err == nil {
			t.Errorf("ParseAllow(%q) accepted", bad)
		}
	}

	p := newPeer(t)
	s := p.sender(t)
	ctx := context.Background()
	for raw, want := range map[string]error{
		"http://example.com/hook":          webhook.ErrNotHTTPS,
		"ftp://example.com/hook":           webhook.ErrNotHTTPS,
		"https://user:pw@example.com/hook": nil, // refused, not for its address
	} {
		err := s.CheckURL(ctx, raw)
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Errorf("CheckURL(%q) = %v, want %v", raw, err, want)
		}
		m := message(p, 0)
		m.To = raw
		if _, err := s.Send(ctx, m); !errors.As(err, new(*deliver.PermanentError)) {
			t.Errorf("Send to %q: %v, want permanent", raw, err)
		}
	}
	// A name resolving to a private address, not allowed: refused when
	// saved and when sent, and nothing is dialled.
	p.dns.Set("intranet.example.com", netip.MustParseAddr("10.0.0.7"))
	p.dns.Set("metadata.example.com", netip.MustParseAddr("169.254.169.254"))
	for _, host := range []string{"intranet.example.com", "metadata.example.com"} {
		if err := s.CheckURL(ctx, "https://"+host+"/hook"); !errors.Is(err, webhook.ErrForbiddenAddress) {
			t.Errorf("CheckURL for %s: %v, want ErrForbiddenAddress", host, err)
		}
		m := message(p, 0)
		m.To = "https://" + host + "/hook"
		var perm *deliver.PermanentError
		if _, err := s.Send(ctx, m); !errors.As(err, &perm) || !errors.Is(err, webhook.ErrForbiddenAddress) {
			t.Errorf("Send to %s: %v, want permanent ErrForbiddenAddress", host, err)
		}
	}
}

// TestDNSRebinding: a name that resolves to a public address when the
// destination is saved and to a loopback one when it is called is refused
// at the connection; the endpoint on the loopback address gets nothing.
func TestDNSRebinding(t *testing.T) {
	p := newPeer(t)
	s := p.sender(t, "192.0.2.99") // an allow list that does not cover the peer
	ctx := context.Background()
	p.dns.Set("example.com", netip.MustParseAddr("93.184.215.14"))
	if err := s.CheckURL(ctx, p.url("/hook/0")); err != nil {
		t.Fatalf("CheckURL with a public answer: %v", err)
	}
	p.dns.Set("example.com", netip.MustParseAddr("127.0.0.1"))
	var perm *deliver.PermanentError
	if _, err := s.Send(ctx, message(p, 0)); !errors.As(err, &perm) || !errors.Is(err, webhook.ErrForbiddenAddress) {
		t.Fatalf("Send after the name moved to 127.0.0.1: %v, want permanent ErrForbiddenAddress", err)
	}
	if n := len(p.requests()); n != 0 {
		t.Errorf("the loopback endpoint received %d requests", n)
	}
	// Positive control: allowed, the same send arrives.
	if _, err := p.sender(t).Send(ctx, message(p, 0)); err != nil || len(p.requests()) != 1 {
		t.Errorf("with the peer allowed: %v, %d requests", err, len(p.requests()))
	}
}

// TestUnsignedSendsNoSignature: Teams and Slack get the JSON alone.
func TestUnsignedSendsNoSignature(t *testing.T) {
	p := newPeer(t)
	s := webhook.New(webhook.Config{Allow: mustAllow(t, "127.0.0.1:"+strconv.Itoa(p.proxy.Port())),
		RootCAs: p.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, Resolver: p.dns.Resolver()})
	defer s.Close()
	m := message(p, 0)
	m.Secret = ""
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	r := p.requests()[0]
	for _, h := range []string{"webhook-id", "webhook-timestamp", "webhook-signature"} {
		if r.Header.Get(h) != "" {
			t.Errorf("unsigned request carries %s", h)
		}
	}
	if string(r.Body) != string(m.Body) || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("body %s, Content-Type %q", r.Body, r.Header.Get("Content-Type"))
	}
}
