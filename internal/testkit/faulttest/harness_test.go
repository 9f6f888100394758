package faulttest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/stream"
	"github.com/crier-dev/crier/internal/testkit/natstest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
	"github.com/crier-dev/crier/internal/testkit/proctest"
	"github.com/crier-dev/crier/internal/testkit/smtptest"
	"github.com/crier-dev/crier/internal/testkit/tcpproxy"
	"github.com/crier-dev/crier/internal/testkit/twiliotest"
)

// crierBin is the crier binary built by TestMain.
var crierBin string

// TestMain builds cmd/crier once, runs the tests and drops pgtest's
// template database. With CRIER_FAULT_RACE=1 and -race the binary is built
// with the race detector too, so that races under faults are caught in the
// processes (any race report fails the test); it is off by default because
// it makes the suite about a minute slower on a 2-core machine.
func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "crier-faulttest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "faulttest:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		race := raceEnabled && os.Getenv("CRIER_FAULT_RACE") == "1"
		start := time.Now()
		if crierBin, err = proctest.Build(dir, race); err != nil {
			fmt.Fprintln(os.Stderr, "faulttest:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "faulttest: built crier (race=%v) in %s\n", race, time.Since(start).Round(time.Millisecond))
		return m.Run()
	}()
	pgtest.DropTemplate()
	os.Exit(code)
}

// heavy lets one load-heavy test run at a time. Every test calls t.Parallel
// so that the long provider-outage test, which mostly waits, overlaps with
// the others; the others take turns through heavy so that the 2-core
// machine is not asked to run several crier fleets at once.
var heavy = make(chan struct{}, 1)

// exclusive marks t parallel and waits for its turn among the heavy tests.
func exclusive(t *testing.T) {
	t.Parallel()
	heavy <- struct{}{}
	t.Cleanup(func() { <-heavy })
}

// Test credentials. They are distinctive so that the log scan can look for
// them: none may appear in any process's output.
const (
	apiToken    = "tok-Fault-7c1e5d0f3a9b42e6b8d4a0c6e2f1"
	tokenSecret = "secret-for-signing-links-0123456789-abcdef"
	mailFrom    = "Status <status@crier.example>"
)

// world is one test's set of dependencies: a fresh database with the
// example catalog, an embedded NATS server, the SMTP and Twilio sinks, the
// CRIER_* environment pointing at them, and the crier processes started.
type world struct {
	t     *testing.T
	dbURL string // direct, for the test's own queries
	st    *store.Store
	proxy *tcpproxy.Proxy // between crier and PostgreSQL when asked for
	nats  *natstest.Server
	js    jetstream.JetStream
	sinks *sinks
	env   map[string]string
	subs  []subscriber

	mu    sync.Mutex
	procs []*proc
}

type worldOptions struct {
	// proxyDB routes crier's database connections through a tcpproxy so
	// the test can cut them (w.proxy).
	proxyDB bool
	// keepMessages makes the sinks keep every message (for inspecting
	// them); otherwise they only count.
	keepMessages bool
	// smtpAuth makes the SMTP server require AUTH with smtpPassword, so
	// that CRIER_SMTP_URL carries a password (that must never be logged).
	smtpAuth bool
}

// smtpPassword is the SMTP password when worldOptions.smtpAuth is set.
const smtpPassword = "smtp-Pa55-e3b0c44298fc1c14"

func newWorld(t *testing.T, o worldOptions) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{t: t}
	w.dbURL = pgtest.NewDatabase(t)
	st, err := store.Open(ctx, w.dbURL, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	w.st = st
	if err := example.Load(ctx, st, example.Components(), nil); err != nil {
		t.Fatal(err)
	}
	crierDB := w.dbURL
	if o.proxyDB {
		u, err := url.Parse(w.dbURL)
		if err != nil {
			t.Fatal(err)
		}
		w.proxy = tcpproxy.New(t, u.Host)
		u.Host = w.proxy.Addr()
		crierDB = u.String()
	}
	w.nats = natstest.New(t)
	nc, err := stream.Connect(w.nats.URL(), "faulttest publisher", stream.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if w.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Ensure(ctx, w.js, stream.Config{MaxAckPending: 16}); err != nil {
		t.Fatal(err)
	}
	w.sinks = newSinks(t, o.keepMessages, o.smtpAuth)
	w.env = map[string]string{
		"CRIER_DATABASE_URL":       crierDB,
		"CRIER_NATS_URL":           w.nats.URL(),
		"CRIER_SMTP_URL":           w.sinks.smtp.URL(),
		"CRIER_MAIL_FROM":          mailFrom,
		"CRIER_TWILIO_ACCOUNT_SID": twiliotest.ExampleAccountSID,
		"CRIER_TWILIO_AUTH_TOKEN":  twiliotest.ExampleAuthToken,
		"CRIER_TWILIO_FROM":        "+447400000001",
		"CRIER_TWILIO_API_URL":     w.sinks.twilio.URL(),
		"CRIER_SMS_RATE":           "0",
		"CRIER_API_TOKENS":         apiToken,
		"CRIER_TOKEN_SECRET":       tokenSecret,
		"CRIER_LOG_FORMAT":         "json",
	}
	return w
}

// subscriber is one test subscriber with both channels confirmed.
type subscriber struct {
	id           int64
	email, phone string
}

// addSubscribers creates n confirmed subscribers of components in one
// statement: sub<i>@care.example, +447400<i, 6 digits>.
func (w *world) addSubscribers(n int, components ...string) []subscriber {
	w.t.Helper()
	ctx := context.Background()
	first := len(w.subs) + 1
	rows, err := w.st.Pool().Query(ctx, `
		INSERT INTO subscribers (email, phone, name, email_confirmed_at, sms_confirmed_at)
		SELECT 'sub' || g || '@care.example', '+447400' || lpad(g::text, 6, '0'), 'Subscriber ' || g, now(), now()
		FROM generate_series($1::int, $2::int) g
		ORDER BY g
		RETURNING id, email, phone`, first, first+n-1)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []subscriber
	for rows.Next() {
		var s subscriber
		if err := rows.Scan(&s.id, &s.email, &s.phone); err != nil {
			w.t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	ids := make([]int64, len(out))
	for i, s := range out {
		ids[i] = s.id
	}
	if _, err := w.st.Pool().Exec(ctx, `
		INSERT INTO subscriptions (component_key, subscriber_id)
		SELECT c, s FROM unnest($1::text[]) c CROSS JOIN unnest($2::bigint[]) s`, components, ids); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.st.Pool().Exec(ctx, `ANALYZE subscribers; ANALYZE subscriptions`); err != nil {
		w.t.Fatal(err)
	}
	w.subs = append(w.subs, out...)
	return out
}

// newEvent returns a valid incident event about component.
func newEvent(id, incident, component string) event.Event {
	return event.Event{
		ID: id, IncidentID: incident, Kind: event.KindIncident, Status: "investigating", Impact: "major",
		Title: "Atlas Device Synchronisation Issues", Body: "Some users are experiencing sync issues on Sync Pod A.",
		Components: []string{component}, OccurredAt: time.Now().UTC().Add(-time.Minute).Truncate(time.Second), Notify: true,
	}
}

// publish puts ev on the stream directly (as another publishing system would).
func (w *world) publish(ev event.Event) {
	w.t.Helper()
	raw, err := event.Encode(ev)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := stream.Publish(context.Background(), w.js, ev, raw); err != nil {
		w.t.Fatal(err)
	}
}

// states counts the deliveries of the events (all events when none are
// named) by "channel/state".
func (w *world) states(eventIDs ...string) map[string]int {
	w.t.Helper()
	rows, err := w.st.Pool().Query(context.Background(), `
		SELECT channel || '/' || state, count(*) FROM deliveries
		WHERE coalesce(cardinality($1::text[]), 0) = 0 OR event_id = ANY($1) GROUP BY 1`, eventIDs)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			w.t.Fatal(err)
		}
		out[k] = n
	}
	return out
}

// fannedOut reports whether the event's fan-out is complete.
func (w *world) fannedOut(id string) bool {
	w.t.Helper()
	return w.count(`SELECT count(*) FROM events WHERE id = $1 AND fanned_out_at IS NOT NULL`, id) == 1
}

// count runs a counting query on the test's own connection.
func (w *world) count(sql string, args ...any) int {
	w.t.Helper()
	var n int
	if err := w.st.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// waitSettled waits until every named event (every stored event when none
// is named) is fanned out, has want deliveries (when want >= 0), and none of
// them is queued or sending.
func (w *world) waitSettled(timeout time.Duration, want int, eventIDs ...string) {
	w.t.Helper()
	waitFor(w.t, fmt.Sprintf("deliveries of %d events to settle", len(eventIDs)), timeout, func() bool {
		var unfinished, total, pending int
		err := w.st.Pool().QueryRow(context.Background(), `
			WITH e AS (
				SELECT id, fanned_out_at FROM events
				WHERE coalesce(cardinality($1::text[]), 0) = 0 OR id = ANY($1))
			SELECT CASE WHEN coalesce(cardinality($1::text[]), 0) = 0 THEN 0
			            ELSE cardinality($1::text[]) - (SELECT count(*) FROM e) END
			         + (SELECT count(*) FROM e WHERE fanned_out_at IS NULL),
			       count(*), count(*) FILTER (WHERE state IN ('queued', 'sending'))
			FROM deliveries WHERE event_id IN (SELECT id FROM e)`, eventIDs).Scan(&unfinished, &total, &pending)
		if err != nil {
			return false
		}
		return unfinished == 0 && pending == 0 && (want < 0 || total == want)
	}, func() string { return fmt.Sprint(w.states(eventIDs...)) })
}

// waitFor polls cond every 50ms until it holds or timeout passes; status,
// when given, describes the situation in the failure message.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool, status ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			extra := ""
			for _, s := range status {
				extra += " (" + s() + ")"
			}
			t.Fatalf("timed out after %s waiting for %s%s", timeout, what, extra)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sinks are the SMTP server and the Twilio stand-in, counting what they
// accepted per recipient.
type sinks struct {
	smtp   *smtptest.Server
	twilio *twiliotest.Server

	mu    sync.Mutex
	email map[string]int // by lower-cased RCPT TO
	sms   map[string]int // by To
	// emailAt and smsAt are when each message arrived; lastAt when the
	// last message to each address (lower-cased email, or number) did.
	emailAt, smsAt []time.Time
	lastAt         map[string]time.Time
}

func newSinks(t *testing.T, keep, auth bool) *sinks {
	s := &sinks{email: map[string]int{}, sms: map[string]int{}, lastAt: map[string]time.Time{}}
	opts := []smtptest.Option{smtptest.WithDataHook(func(m smtptest.Message) *smtp.SMTPError {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, to := range m.To {
			s.email[strings.ToLower(to)]++
			s.emailAt = append(s.emailAt, time.Now())
			s.lastAt[strings.ToLower(to)] = time.Now()
		}
		return nil
	})}
	if !keep {
		opts = append(opts, smtptest.WithDiscard())
	}
	if auth {
		opts = append(opts, smtptest.WithAuth("crier", smtpPassword))
	}
	s.smtp = smtptest.New(t, opts...)
	s.twilio = twiliotest.New(t, twiliotest.ExampleAccountSID, twiliotest.ExampleAuthToken)
	s.twilio.SetDiscard(!keep)
	s.twilio.SetHook(func(to string, _ int) *twiliotest.Fault {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.sms[to]++
		s.smsAt = append(s.smsAt, time.Now())
		s.lastAt[to] = time.Now()
		return nil
	})
	return s
}

// tally compares what the sinks accepted with subs, each of whom should
// have got want messages per channel: how many subscriber channels got
// fewer, and how many messages were extra copies.
type tally struct {
	missingEmail, missingSMS int
	dupEmail, dupSMS         int
	emails, texts            int // messages accepted for subs
}

func (s *sinks) tally(subs []subscriber, want int) tally {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r tally
	count := func(n int, missing, dup, total *int) {
		*total += n
		if n < want {
			*missing += want - n
		} else {
			*dup += n - want
		}
	}
	for _, sub := range subs {
		count(s.email[strings.ToLower(sub.email)], &r.missingEmail, &r.dupEmail, &r.emails)
		count(s.sms[sub.phone], &r.missingSMS, &r.dupSMS, &r.texts)
	}
	return r
}

func (r tally) dups() int { return r.dupEmail + r.dupSMS }

func (r tally) String() string {
	return fmt.Sprintf("emails %d (missing %d, extra %d), texts %d (missing %d, extra %d)",
		r.emails, r.missingEmail, r.dupEmail, r.texts, r.missingSMS, r.dupSMS)
}

// arrivals returns a copy of the arrival times of the channel's messages.
func (s *sinks) arrivals(channel string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if channel == "email" {
		return slices.Clone(s.emailAt)
	}
	return slices.Clone(s.smsAt)
}

// arrivedAt returns when the last message to address (an email address or
// a number) arrived, and whether one did.
func (s *sinks) arrivedAt(address string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.lastAt[strings.ToLower(address)]
	return at, ok
}

// totalAccepted is the number of messages the sinks accepted, whoever for.
func (s *sinks) totalAccepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.email {
		n += c
	}
	for _, c := range s.sms {
		n += c
	}
	return n
}

// proc is one running `crier serve`.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	addr string // host:port of its HTTP server
	logs *proctest.Output

	done    chan struct{}
	waitErr error
}

// base is the process's HTTP base URL.
func (p *proc) base() string { return "http://" + p.addr }

// start runs `crier serve` with the world's environment plus extra, on a
// free port, and waits until /readyz answers 200. The process is killed
// when the test ends if it is still running.
func (w *world) start(name string, extra map[string]string) *proc {
	w.t.Helper()
	for attempt := 1; ; attempt++ {
		p, err := w.tryStart(name, extra)
		if err == nil {
			return p
		}
		// Another process may have taken the free port in between.
		if attempt < 4 && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		w.t.Fatalf("start %s: %v", name, err)
	}
}

func (w *world) tryStart(name string, extra map[string]string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	vars := map[string]string{"CRIER_HTTP_ADDR": addr, "CRIER_PUBLIC_URL": "http://" + addr}
	for k, v := range w.env {
		vars[k] = v
	}
	for k, v := range extra {
		vars[k] = v
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "GORACE=halt_on_error=0 exitcode=66"}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	p := &proc{t: w.t, name: name, addr: addr, logs: &proctest.Output{}, done: make(chan struct{})}
	p.cmd = exec.Command(crierBin, "serve")
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
	w.t.Cleanup(func() {
		p.kill()
		p.checkLogs()
		if w.t.Failed() {
			w.t.Logf("last lines of %s:\n%s", p.name, p.logs.Tail(40))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("exited before it was ready (%v):\n%s", p.waitErr, p.logs.Tail(20))
		default:
		}
		if code, _ := p.get("/readyz"); code == http.StatusOK {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("not ready after 60s:\n%s", p.logs.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL (if the process still runs) and waits for it to end.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// term sends SIGTERM and waits up to timeout for the process to exit. It
// returns the exit code (-1 when killed by a signal) and how long it took;
// after timeout it kills the process and fails the test.
func (p *proc) term(timeout time.Duration) (code int, took time.Duration) {
	p.t.Helper()
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		p.t.Fatalf("%s did not exit within %s of SIGTERM", p.name, timeout)
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(start)
}

// checkLogs fails the test when the process reported a data race or a
// panic.
func (p *proc) checkLogs() {
	out := p.logs.String()
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
		if strings.Contains(out, bad) {
			i := strings.Index(out, bad)
			p.t.Errorf("%s printed %q:\n%s", p.name, bad, out[i:min(len(out), i+4000)])
		}
	}
}

var client = &http.Client{Timeout: 30 * time.Second}

// get fetches path and returns the status and body (0 on a network error).
func (p *proc) get(path string) (int, string) {
	return p.do(http.MethodGet, path, "", nil, nil)
}

// do sends one request; hdr may be nil.
func (p *proc) do(method, path, contentType string, body io.Reader, hdr http.Header) (int, string) {
	req, err := http.NewRequest(method, p.base()+path, body)
	if err != nil {
		p.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// postEvent posts raw to POST /v1/events with the API token.
func (p *proc) postEvent(raw []byte) (int, string) {
	return p.do(http.MethodPost, "/v1/events", "application/json", bytes.NewReader(raw),
		http.Header{"Authorization": {"Bearer " + apiToken}})
}

// metric returns the value of the sample of name whose labels include
// every label="value" pair given, summed over the matching samples.
func (p *proc) metric(name string, labels ...string) (float64, error) {
	code, body := p.get("/metrics")
	if code != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %d %s", code, body)
	}
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
