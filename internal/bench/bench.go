// Package bench measures crier end to end as an operator would: a fresh
// database with N subscribers, loopback sinks that speak SMTP and Twilio's
// REST wire format, crier's real serve path in this process, one event (or
// a series of small ones) published through JetStream, and a summary of
// throughput, latency, CPU and memory.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/crier-dev/crier/internal/testkit/sink"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/config"
	"github.com/crier-dev/crier/internal/devenv"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/serve"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/stream"
)

// Config is one benchmark run.
type Config struct {
	// ServerURL is a PostgreSQL URL with rights to create databases; the
	// run creates its own database there and drops it afterwards.
	ServerURL string
	// Subscribers is the number of subscribers (default 100,000).
	Subscribers int
	// Email and SMS choose the channels every subscriber has.
	Email, SMS bool
	// Events is the number of events published one after another (each
	// waits for the previous one to be fully delivered). Default 1.
	Events int
	// SMTPLatency and TwilioLatency delay each sink's answer per message.
	SMTPLatency, TwilioLatency time.Duration
	// SMTPPool, Workers, EmailRate and SMSRate set the CRIER_* values of the
	// same meaning.
	SMTPPool  int
	Workers   int
	EmailRate float64
	SMSRate   float64
	// Timeout bounds the wait for one event's deliveries.
	Timeout time.Duration
	// Critical, when positive, makes each event a maintenance notice and,
	// once its sending has begun, publishes a critical incident to Critical
	// more subscribers (of capa only): the report says how long after its
	// publish they were all reached, behind the maintenance backlog.
	Critical int
	// AnalyzeEmpty, when positive, runs ANALYZE on the still-empty queue,
	// as autovacuum or an operator would after a quiet start, and lets crier
	// poll it idle this long before the first event.
	AnalyzeEmpty time.Duration
	// Keep leaves the database in place.
	Keep bool
	// Log receives crier's own log (nil: discarded).
	Log *slog.Logger
}

// EventResult is what one event took.
type EventResult struct {
	Expected, Accepted, Missing, Doubled int
	First, Last                          time.Duration
	P50, P99                             time.Duration
	PerChannel                           map[string]ChannelResult
	FanOut                               time.Duration
	Critical                             *CriticalResult // backlog runs only
}

// ChannelResult is one channel's share of an event.
type ChannelResult struct {
	Accepted    int
	First, Last time.Duration
}

// Report is the outcome of a run.
type Report struct {
	Config     Config
	Events     []EventResult
	LoadTime   time.Duration
	CPU        time.Duration // user+system CPU of this process during the events
	PeakRSS    int64         // bytes, of this process (crier, NATS and the sinks)
	DBCPU      time.Duration // user+system CPU of the local postgres processes during the events
	DBCPUNote  string        // why DBCPU was not measured; empty when it was
	Deliveries int
}

// CriticalResult is how the critical incident of a backlog run fared.
type CriticalResult struct {
	// After is when it was published, after the maintenance notice.
	After time.Duration
	// Reached is, by channel, how long after its own publish the last of
	// its recipients was reached; Missing counts those never reached.
	Reached map[string]time.Duration
	Missing int
	// Behind is how many maintenance messages had not yet been accepted
	// when the last critical one was.
	Behind int
}

// Run performs a benchmark run.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Report{}, err
	}
	rep := Report{Config: cfg}

	dbURL, drop, err := createDatabase(ctx, cfg.ServerURL, cfg.Keep)
	if err != nil {
		return rep, err
	}
	defer drop()
	loadStart := time.Now()
	if err := load(ctx, dbURL, cfg); err != nil {
		return rep, err
	}
	rep.LoadTime = time.Since(loadStart)

	smtpSink, err := sink.StartSMTP(cfg.SMTPLatency, cfg.Subscribers+cfg.Critical)
	if err != nil {
		return rep, err
	}
	defer smtpSink.Close()
	twSink, err := sink.StartTwilio(cfg.TwilioLatency, cfg.Subscribers+cfg.Critical)
	if err != nil {
		return rep, err
	}
	defer twSink.Close()
	if cfg.Critical > 0 {
		smtpSink.Tally().Watch(cfg.Subscribers + 1)
		twSink.Tally().Watch(cfg.Subscribers + 1)
	}

	dir, err := os.MkdirTemp("", "crier-bench-nats-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	ns, err := devenv.StartNATS(devenv.NATSConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		return rep, err
	}
	defer ns.Stop(context.Background())

	stop, err := startCrier(ctx, cfg, map[string]string{
		"CRIER_DATABASE_URL":   dbURL,
		"CRIER_NATS_URL":       ns.URL(),
		"CRIER_SMTP_URL":       smtpSink.URL(),
		"CRIER_TWILIO_API_URL": twSink.URL(),
	})
	if err != nil {
		return rep, err
	}
	defer stop()
	if cfg.AnalyzeEmpty > 0 {
		select {
		case <-time.After(cfg.AnalyzeEmpty):
		case <-ctx.Done():
			return rep, ctx.Err()
		}
	}

	nc, err := stream.Connect(ns.URL(), "crier-bench", stream.Auth{})
	if err != nil {
		return rep, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return rep, err
	}
	err = measure(cfg, &rep, func(i int, expected map[string]int) (EventResult, error) {
		return runEvent(ctx, js, dbURL, i, expected, smtpSink.Tally(), twSink.Tally(), cfg)
	})
	return rep, err
}

// withDefaults fills in the zero fields of a run's configuration.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Subscribers <= 0 {
		cfg.Subscribers = 100_000
	}
	if cfg.Events <= 0 {
		cfg.Events = 1
	}
	if !cfg.Email && !cfg.SMS {
		return cfg, errors.New("choose at least one channel")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return cfg, nil
}

// startCrier runs crier's serve path in this process with the given
// CRIER_* variables on top of the run's, and returns once it is ready;
// stop shuts it down and waits.
func startCrier(ctx context.Context, cfg Config, vars map[string]string) (stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	env := map[string]string{
		"CRIER_HTTP_ADDR":          ln.Addr().String(),
		"CRIER_PUBLIC_URL":         "https://status.bench.example",
		"CRIER_MAIL_FROM":          "Status <status@bench.example>",
		"CRIER_SMTP_POOL":          fmt.Sprint(max(1, cfg.SMTPPool)),
		"CRIER_EMAIL_RATE":         fmt.Sprint(cfg.EmailRate),
		"CRIER_TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
		"CRIER_TWILIO_AUTH_TOKEN":  "benchtoken",
		"CRIER_TWILIO_FROM":        "+447400999999",
		"CRIER_SMS_RATE":           fmt.Sprint(cfg.SMSRate),
		"CRIER_DELIVERY_WORKERS":   fmt.Sprint(max(1, cfg.Workers)),
		"CRIER_MAX_AGE":            "2h",
	}
	maps.Copy(env, vars)
	ccfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- serve.Run(runCtx, ccfg, cfg.Log, serve.Options{Listener: ln, Ready: func(string) { close(ready) }})
	}()
	select {
	case <-ready:
		return func() { cancel(); <-done }, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("serve: %w", err)
	}
}

// measure publishes the run's events one after the other with run and
// fills in rep: the events' results, the CPU of this process and of
// PostgreSQL, and the peak RSS.
func measure(cfg Config, rep *Report, run func(i int, expected map[string]int) (EventResult, error)) error {
	expected := map[string]int{}
	if cfg.Email {
		expected["email"] = cfg.Subscribers + cfg.Critical
	}
	if cfg.SMS {
		expected["sms"] = cfg.Subscribers + cfg.Critical
	}
	// PostgreSQL's CPU is sampled just outside this process's, so that
	// reading /proc does not count as crier's.
	pg0, pgErr := samplePostgresCPU()
	cpu0 := cpuTime()
	for i := range cfg.Events {
		res, err := run(i, expected)
		if err != nil {
			return err
		}
		rep.Events = append(rep.Events, res)
		rep.Deliveries += res.Accepted
	}
	rep.CPU = cpuTime() - cpu0
	if pgErr == nil {
		var pg1 pgCPUSample
		if pg1, pgErr = samplePostgresCPU(); pgErr == nil {
			rep.DBCPU = pg1.since(pg0)
		}
	}
	if pgErr != nil {
		rep.DBCPUNote = pgErr.Error()
	}
	rep.PeakRSS = peakRSS()
	return nil
}

func runEvent(ctx context.Context, js jetstream.JetStream, dbURL string, i int, expected map[string]int, mail, sms *sink.Tally, cfg Config) (EventResult, error) {
	ev := event.Event{
		ID: fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i), IncidentID: fmt.Sprintf("bench-incident-%d", i),
		Kind: event.KindIncident, Status: "investigating", Impact: "major",
		Title:      "Atlas Device Synchronisation Issues",
		Body:       "We are aware that some users are experiencing some Atlas Device Synchronisation issues on Sync Pod A, if you are experiencing these problems please attempt to change to Sync Pod B",
		Components: []string{"atlas-sync/sync-pod-a"}, OccurredAt: time.Now().UTC(), Notify: true,
	}
	if cfg.Critical > 0 {
		ev.Kind, ev.Status, ev.Impact, ev.Title = event.KindMaintenance, "scheduled", "none", "Planned maintenance of Atlas Sync"
		from, until := time.Now().Add(time.Hour).UTC(), time.Now().Add(2*time.Hour).UTC()
		ev.ScheduledFor, ev.ScheduledUntil = &from, &until
	}
	start := time.Now()
	mail.Reset(start)
	sms.Reset(start)
	if err := publish(ctx, js, ev); err != nil {
		return EventResult{}, err
	}
	want := expected["email"] + expected["sms"]
	accepted := func() int { return int(mail.Total() + sms.Total()) }
	var crit *CriticalResult
	if cfg.Critical > 0 {
		// The backlog is sending: now the critical incident.
		if err := waitUntil(ctx, cfg.Timeout, func() bool { return accepted() >= min(want/10, 1000) }); err != nil {
			return EventResult{}, fmt.Errorf("event %d: the maintenance notice did not start: %w", i, err)
		}
		crit = &CriticalResult{After: time.Since(start)}
		if err := publish(ctx, js, criticalEvent(i)); err != nil {
			return EventResult{}, err
		}
	}
	if err := waitUntil(ctx, cfg.Timeout, func() bool { return accepted() >= want }); err != nil {
		return EventResult{}, fmt.Errorf("event %d: only %d of %d deliveries accepted: %w", i, accepted(), want, err)
	}
	// Let stragglers (doubles) arrive before counting.
	<-time.After(200 * time.Millisecond)
	res := collect(expected, map[string]*sink.Tally{"email": mail, "sms": sms})
	if crit != nil {
		criticalResult(crit, cfg, expected, map[string]*sink.Tally{"email": mail, "sms": sms})
		res.Critical = crit
	}
	var err error
	res.FanOut, err = fanOutTime(ctx, dbURL, ev.ID)
	return res, err
}

// criticalEvent is the critical incident of a backlog run, to the capa
// subscribers.
func criticalEvent(i int) event.Event {
	return event.Event{
		ID: fmt.Sprintf("bench-critical-%d-%d", time.Now().UnixNano(), i), IncidentID: fmt.Sprintf("bench-critical-%d", i),
		Kind: event.KindIncident, Status: "investigating", Impact: "critical",
		Title: "CAPA unavailable", Body: "CAPA cannot be reached: use the paper medication charts until further notice.",
		Components: []string{"capa"}, OccurredAt: time.Now().UTC(), Notify: true,
	}
}

func publish(ctx context.Context, js jetstream.JetStream, ev event.Event) error {
	raw, err := event.Encode(ev)
	if err != nil {
		return err
	}
	_, err = stream.Publish(ctx, js, ev, raw)
	return err
}

// waitUntil polls cond every 5 ms until it holds, ctx ends or timeout
// passes.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("not within %s", timeout)
		case <-tick.C:
		}
	}
	return nil
}

// collect counts what the sinks accepted against expected.
func collect(expected map[string]int, tallies map[string]*sink.Tally) EventResult {
	res := EventResult{Expected: expected["email"] + expected["sms"], PerChannel: map[string]ChannelResult{}}
	var all []time.Duration
	for ch, t := range tallies {
		if expected[ch] == 0 {
			continue
		}
		acc, distinct, doubled := t.Snapshot()
		lat := t.Latencies()
		slices.Sort(lat)
		cr := ChannelResult{Accepted: acc}
		if len(lat) > 0 {
			cr.First, cr.Last = lat[0], lat[len(lat)-1]
		}
		res.PerChannel[ch] = cr
		res.Accepted += acc
		res.Doubled += doubled
		res.Missing += expected[ch] - distinct
		all = append(all, lat...)
	}
	slices.Sort(all)
	if len(all) > 0 {
		res.First, res.Last = all[0], all[len(all)-1]
		res.P50 = all[len(all)/2]
		res.P99 = all[min(len(all)-1, len(all)*99/100)]
	}
	return res
}

// criticalResult fills in c from the watched recipients' arrivals: when the
// last critical message of each channel arrived after the critical
// publish, and how many maintenance messages were still to come then.
func criticalResult(c *CriticalResult, cfg Config, expected map[string]int, tallies map[string]*sink.Tally) {
	c.Reached = map[string]time.Duration{}
	var last time.Duration
	for ch, t := range tallies {
		if expected[ch] == 0 {
			continue
		}
		arr := t.Arrivals()
		c.Missing += cfg.Critical - len(arr)
		var slowest time.Duration
		for _, at := range arr {
			slowest = max(slowest, at)
		}
		c.Reached[ch] = slowest - c.After
		last = max(last, slowest)
	}
	for _, t := range tallies {
		for _, at := range t.Latencies() {
			if at > last {
				c.Behind++
			}
		}
	}
}

// fanOutTime is the time from receiving the event to committing its
// deliveries, as recorded in the database.
func fanOutTime(ctx context.Context, dbURL, id string) (time.Duration, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var secs float64
	err = conn.QueryRow(ctx, `
		SELECT extract(epoch FROM (SELECT max(d.created_at) FROM deliveries d
		                           WHERE d.id BETWEEN e.first_delivery_id AND e.last_delivery_id AND d.event_id = e.id)
		                          - e.received_at)
		FROM events e WHERE e.id = $1`, id).Scan(&secs)
	return time.Duration(secs * float64(time.Second)), err
}

func createDatabase(ctx context.Context, serverURL string, keep bool) (string, func(), error) {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s: %w", redactURL(serverURL), err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "crier_bench_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	u, _ := url.Parse(serverURL)
	u.Path = "/" + name
	drop := func() {
		if keep {
			fmt.Fprintf(os.Stderr, "kept database %s\n", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if c, err := pgx.Connect(ctx, serverURL); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	}
	return u.String(), drop, nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(database url)"
	}
	return u.Redacted()
}

// load migrates the database and inserts the catalog and the subscribers
// in set-based statements, then ANALYZEs.
func load(ctx context.Context, dbURL string, cfg Config) error {
	st, err := store.Open(ctx, dbURL, 2)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, nil); err != nil {
		return err
	}
	if err := example.Load(ctx, st, example.Components(), nil); err != nil {
		return err
	}
	// 5,000 homes, each with its managers.
	if _, err := st.Pool().Exec(ctx, `
		INSERT INTO organisations (key, name) SELECT 'care-home-' || i, 'Care home ' || i FROM generate_series(0, 4999) AS i`); err != nil {
		return fmt.Errorf("load organisations: %w", err)
	}
	_, err = st.Pool().Exec(ctx, `
		WITH s AS (
			INSERT INTO subscribers (email, phone, email_confirmed_at, sms_confirmed_at, name, organisation_key)
			SELECT CASE WHEN $2 THEN 'manager' || i || '@care' || (i % 997) || '.example' END,
			       CASE WHEN $3 THEN '+4474' || lpad(i::text, 8, '0') END,
			       now(), now(), 'Manager ' || i, 'care-home-' || (i % 5000)
			FROM generate_series(1, $1) AS i
			RETURNING id
		)
		INSERT INTO subscriptions (component_key, subscriber_id)
		SELECT CASE id % 3 WHEN 0 THEN 'atlas-sync' WHEN 1 THEN 'atlas-sync/sync-pod-a' ELSE 'emar' END, id FROM s`,
		cfg.Subscribers, cfg.Email, cfg.SMS)
	if err != nil {
		return fmt.Errorf("load subscribers: %w", err)
	}
	// emar subscribers must be reached too: give them atlas-sync as well.
	if _, err := st.Pool().Exec(ctx, `
		INSERT INTO subscriptions (component_key, subscriber_id)
		SELECT 'atlas-sync', subscriber_id FROM subscriptions WHERE component_key = 'emar'`); err != nil {
		return fmt.Errorf("load subscriptions: %w", err)
	}
	if cfg.Critical > 0 {
		// Numbered after the others, so that the sinks watch them.
		if _, err := st.Pool().Exec(ctx, `
			WITH s AS (
				INSERT INTO subscribers (email, phone, email_confirmed_at, sms_confirmed_at, name)
				SELECT CASE WHEN $2 THEN 'manager' || i || '@critical.example' END,
				       CASE WHEN $3 THEN '+4474' || lpad(i::text, 8, '0') END, now(), now(), 'Manager ' || i
				FROM generate_series($4 + 1, $4 + $1) AS i
				RETURNING id
			)
			INSERT INTO subscriptions (component_key, subscriber_id) SELECT 'capa', id FROM s`,
			cfg.Critical, cfg.Email, cfg.SMS, cfg.Subscribers); err != nil {
			return fmt.Errorf("load critical subscribers: %w", err)
		}
	}
	// ANALYZE sees the queue empty either way; AnalyzeEmpty is about the
	// idle polls that follow it, which let a cached plan settle.
	if _, err := st.Pool().Exec(ctx, `ANALYZE`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func peakRSS() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss * 1024
}
