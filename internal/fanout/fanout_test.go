package fanout_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/fanout"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/stream"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/natstest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type bundle struct {
	store *store.Store
	nats  *natstest.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	cons  jetstream.Consumer
	subs  map[string]int64 // subscriber label -> id
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setup gives a test its own database with the example catalog and the
// subscribers below, and its own embedded NATS server with the stream and
// consumer created.
func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	b := &bundle{store: pgtest.NewStore(t), nats: natstest.New(t), subs: map[string]int64{}}
	if err := example.Load(ctx, b.store, example.Components(), nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range testSubscribers {
		id, err := b.store.CreateSubscriber(ctx, s.NewSubscriber)
		if err != nil {
			t.Fatalf("create %s: %v", s.label, err)
		}
		b.subs[s.label] = id
	}
	if _, err := b.store.Pool().Exec(ctx, `UPDATE subscribers SET sms_opted_out_at = now() WHERE id = $1`, b.subs["group-both-sms-opted-out"]); err != nil {
		t.Fatal(err)
	}
	nc, err := stream.Connect(b.nats.URL(), "test", stream.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b.nc = nc
	b.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	b.cons, err = stream.Ensure(ctx, b.js, stream.Config{AckWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type labelled struct {
	label string
	store.NewSubscriber
}

// Subscribers at every level of the tree, with email only, SMS only, both,
// unconfirmed and opted out.
var testSubscribers = []labelled{
	{"group-email", store.NewSubscriber{Email: "group@example.org", Components: []string{"atlas-sync"}, ConfirmEmail: true}},
	{"pod-a-sms", store.NewSubscriber{Phone: "+447400123401", Components: []string{"atlas-sync/sync-pod-a"}, ConfirmSMS: true}},
	{"pod-b-both", store.NewSubscriber{Email: "podb@example.org", Phone: "+447400123402", Components: []string{"atlas-sync/sync-pod-b"}, ConfirmEmail: true, ConfirmSMS: true}},
	{"emar-both", store.NewSubscriber{Email: "emar@example.org", Phone: "+447400123403", Components: []string{"emar"}, ConfirmEmail: true, ConfirmSMS: true}},
	{"capa-email", store.NewSubscriber{Email: "capa@example.org", Components: []string{"capa"}, ConfirmEmail: true}},
	{"group-unconfirmed", store.NewSubscriber{Email: "unconfirmed@example.org", Phone: "+447400123404", Components: []string{"atlas-sync"}}},
	{"group-both-sms-opted-out", store.NewSubscriber{Email: "optout@example.org", Phone: "+447400123405", Components: []string{"atlas-sync"}, ConfirmEmail: true, ConfirmSMS: true}},
	{"many-both", store.NewSubscriber{Email: "many@example.org", Phone: "+447400123406", Components: []string{"emar", "capa", "atlas-sync/sync-pod-a", "atlas-sync"}, ConfirmEmail: true, ConfirmSMS: true}},
	{"capa-email-unconfirmed-sms", store.NewSubscriber{Email: "capa2@example.org", Phone: "+447400123407", Components: []string{"capa"}, ConfirmEmail: true}},
}

func run(t *testing.T, b *bundle, cfg fanout.Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := fanout.New(cfg, b.store, quietLog(), nil)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, b.cons) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func publish(t *testing.T, b *bundle, raw []byte, id string) stream.PublishResult {
	t.Helper()
	ack, err := b.js.PublishMsg(context.Background(), &nats.Msg{
		Subject: "incidents.incident.test",
		Data:    raw,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{id}},
	})
	if err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
	return stream.PublishResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}
}

func publishEvent(t *testing.T, b *bundle, ev event.Event) stream.PublishResult {
	t.Helper()
	res, err := stream.Publish(context.Background(), b.js, ev, incidenttest.Raw(ev))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func count(t *testing.T, b *bundle, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.store.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func waitEvents(t *testing.T, b *bundle, stored, rejected int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d stored and %d rejected events", stored, rejected), 20*time.Second, func() (bool, error) {
		var s, r int
		err := b.store.Pool().QueryRow(context.Background(),
			`SELECT (SELECT count(*) FROM events WHERE fanned_out_at IS NOT NULL), (SELECT count(*) FROM rejected_events)`).Scan(&s, &r)
		return s >= stored && r >= rejected, err
	})
}

// ledger returns "label/channel/event-suffix/state" for every delivery.
func ledger(t *testing.T, b *bundle) []string {
	t.Helper()
	labels := map[int64]string{}
	for l, id := range b.subs {
		labels[id] = l
	}
	rows, err := b.store.Pool().Query(context.Background(), `SELECT subscriber_id, channel, event_id, state FROM deliveries`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id int64
		var ch, ev, state string
		if err := rows.Scan(&id, &ch, &ev, &state); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s/%s/%s/%s", labels[id], ch, ev[len(ev)-1:], state))
	}
	slices.Sort(out)
	return out
}

func TestIncidentOf10NovemberFansOutToExactlyTheRightPeople(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run(t, b, fanout.Config{})
	updates := incidenttest.Updates()
	for i, ev := range updates {
		publishEvent(t, b, ev)
		waitEvents(t, b, i+1, 0)
	}

	// Which updates reach each (subscriber, channel), by the tree rule:
	// 1 pod-a; 2 pod-a+pod-b; 3 emar+capa; 4-7 atlas-sync; 8 emar+capa+atlas-sync.
	reach := map[string]string{
		"group-email/email":                "1245678",
		"pod-a-sms/sms":                    "1245678",
		"pod-b-both/email":                 "245678",
		"pod-b-both/sms":                   "245678",
		"emar-both/email":                  "38",
		"emar-both/sms":                    "38",
		"capa-email/email":                 "38",
		"group-both-sms-opted-out/email":   "1245678",
		"many-both/email":                  "12345678",
		"many-both/sms":                    "12345678",
		"capa-email-unconfirmed-sms/email": "38",
	}
	var want []string
	for key, evs := range reach {
		for i, n := range evs {
			// Nothing was sent, so every update but the newest one is
			// superseded by the next one that reached the same person.
			state := "superseded"
			if i == len(evs)-1 {
				state = "queued"
			}
			want = append(want, fmt.Sprintf("%s/%c/%s", key, n, state))
		}
	}
	slices.Sort(want)
	got := ledger(t, b)
	if !slices.Equal(got, want) {
		t.Errorf("ledger mismatch\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

func TestOlderUpdateArrivingLateStartsSuperseded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run(t, b, fanout.Config{})
	updates := incidenttest.Updates()
	publishEvent(t, b, updates[1]) // 14:14, both pods
	waitEvents(t, b, 1, 0)
	publishEvent(t, b, updates[0]) // 13:35, pod A, arrives late
	waitEvents(t, b, 2, 0)

	states := map[string]int{}
	rows, err := b.store.Pool().Query(context.Background(), `SELECT event_id, state, count(*) FROM deliveries GROUP BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var ev, st string
		var n int
		if err := rows.Scan(&ev, &st, &n); err != nil {
			t.Fatal(err)
		}
		states[ev[len(ev)-1:]+"/"+st] = n
	}
	// Update 2 reaches 7 (subscriber, channel) pairs, all still queued; the
	// late update 1 reaches 5 of the same pairs and starts superseded.
	want := map[string]int{"2/queued": 7, "1/superseded": 5}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("states = %v, want %v", states, want)
	}
}

func TestDuplicatesCreateNothingNew(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev := incidenttest.Updates()[0]
	raw := incidenttest.Raw(ev)

	// Consumer stopped before acknowledging: JetStream redelivers.
	ctx := context.Background()
	first := publish(t, b, raw, ev.ID)
	if first.Duplicate {
		t.Fatal("first publish reported duplicate")
	}
	if again := publish(t, b, raw, ev.ID); !again.Duplicate {
		t.Error("second publish with the same Nats-Msg-Id not reported as duplicate")
	}
	// Same event under another message id (outside the stream's window, or a
	// publisher that forgot the header): the database dedups by event id.
	publish(t, b, raw, "other-msg-id")

	// A worker takes the first message, stores it, and dies before Ack.
	batch, err := b.cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		res, err := b.store.Ingest(ctx, ev, msg.Data(), 0)
		if err != nil || res.Duplicate {
			t.Fatalf("first ingest: %+v, %v", res, err)
		}
	}
	rowsBefore := count(t, b, `SELECT count(*) FROM deliveries`)
	if rowsBefore == 0 {
		t.Fatal("no deliveries created")
	}

	// A new worker gets the redelivery (after AckWait) and the republish.
	run(t, b, fanout.Config{})
	waitFor(t, "all messages acknowledged", 20*time.Second, func() (bool, error) {
		info, err := b.cons.Info(ctx)
		if err != nil {
			return false, err
		}
		return info.NumPending == 0 && info.NumAckPending == 0, nil
	})
	if got := count(t, b, `SELECT count(*) FROM deliveries`); got != rowsBefore {
		t.Errorf("deliveries = %d after redelivery and republish, want %d", got, rowsBefore)
	}
	if got := count(t, b, `SELECT count(*) FROM events`); got != 1 {
		t.Errorf("events = %d, want 1", got)
	}
}

func TestTwoWorkersFanOutEachEventOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run(t, b, fanout.Config{Workers: 3})
	run(t, b, fanout.Config{Workers: 3})
	const n = 60
	base := incidenttest.Updates()[3]
	for i := range n {
		ev := base
		ev.ID = fmt.Sprintf("parallel-%03d", i)
		ev.IncidentID = fmt.Sprintf("parallel-incident-%d", i%7)
		ev.OccurredAt = base.OccurredAt.Add(time.Duration(i) * time.Minute)
		publishEvent(t, b, ev)
	}
	waitEvents(t, b, n, 0)
	// Each event reaches the 7 (subscriber, channel) pairs of atlas-sync.
	if got := count(t, b, `SELECT count(*) FROM deliveries`); got != n*7 {
		t.Errorf("deliveries = %d, want %d", got, n*7)
	}
	if got := count(t, b, `SELECT count(*) FROM (SELECT event_id FROM deliveries GROUP BY event_id HAVING count(*) <> 7) x`); got != 0 {
		t.Errorf("%d events with a wrong number of deliveries", got)
	}
	// Within each incident only the newest update is still queued.
	if got := count(t, b, `SELECT count(*) FROM deliveries WHERE state = 'queued'`); got != 7*7 {
		t.Errorf("queued = %d, want %d (newest of each of 7 incidents)", got, 7*7)
	}
}

func TestInvalidEventsAreRejectedAndDoNotBlock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run(t, b, fanout.Config{})
	valid := incidenttest.Updates()[0]
	mutate := func(f func(m map[string]any)) []byte {
		ev := valid
		raw := incidenttest.Raw(ev)
		m := map[string]any{}
		if err := jsonUnmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		out, err := jsonMarshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	cases := []struct {
		name  string
		raw   []byte
		field string
	}{
		{"bad json", []byte(`{"id": "x",`), ""},
		{"not utf-8", []byte("{\"id\": \"\xff\xfe\"}"), ""},
		{"missing id", mutate(func(m map[string]any) { delete(m, "id") }), "id"},
		{"missing title", mutate(func(m map[string]any) { delete(m, "title") }), "title"},
		{"unknown status for kind", mutate(func(m map[string]any) { m["status"] = "scheduled" }), "status"},
		{"unknown kind", mutate(func(m map[string]any) { m["kind"] = "outage" }), "kind"},
		{"unknown impact", mutate(func(m map[string]any) { m["impact"] = "apocalyptic" }), "impact"},
		{"unknown component", mutate(func(m map[string]any) { m["components"] = []string{"atlas-sync/sync-pod-c"} }), "components"},
		{"no components", mutate(func(m map[string]any) { m["components"] = []string{} }), "components"},
		{"oversize id", mutate(func(m map[string]any) { m["id"] = strings.Repeat("x", 201) }), "id"},
		{"oversize title", mutate(func(m map[string]any) { m["title"] = strings.Repeat("t", 301) }), "title"},
		{"bad time", mutate(func(m map[string]any) { m["occurred_at"] = "10/11/2025 13:35" }), "occurred_at"},
		{"wrong type", mutate(func(m map[string]any) { m["notify"] = "yes" }), "notify"},
		{"unknown field", mutate(func(m map[string]any) { m["severity"] = "high" }), "severity"},
		{"maintenance without window", mutate(func(m map[string]any) { m["kind"] = "maintenance"; m["status"] = "scheduled" }), "scheduled_for"},
		{"nul in title", mutate(func(m map[string]any) { m["title"] = "a\x00b" }), "title"},
	}
	for i, c := range cases {
		publish(t, b, c.raw, fmt.Sprintf("bad-%d", i))
	}
	publishEvent(t, b, valid)
	waitEvents(t, b, 1, len(cases))

	rows, err := b.store.ListRejected(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(cases) {
		t.Fatalf("rejected = %d, want %d", len(rows), len(cases))
	}
	byRaw := map[string]store.Rejected{}
	for _, r := range rows {
		byRaw[string(r.Raw)] = r
	}
	for _, c := range cases {
		r, ok := byRaw[string(c.raw)]
		if !ok {
			t.Errorf("%s: not among the rejected events", c.name)
			continue
		}
		if r.Field != c.field || r.Reason == "" || string(r.Raw) != string(c.raw) {
			t.Errorf("%s: rejected as field %q reason %q raw %q; want field %q with a reason and the raw bytes", c.name, r.Field, r.Reason, r.Raw, c.field)
		}
	}
	if got := count(t, b, `SELECT count(*) FROM deliveries WHERE event_id = $1`, valid.ID); got == 0 {
		t.Error("valid event behind the invalid ones was not fanned out")
	}
	// The valid event is acknowledged just after its fan-out is marked
	// done, which waitEvents saw: every message is acknowledged soon after.
	waitFor(t, "every event acknowledged (invalid ones too)", 10*time.Second, func() (bool, error) {
		info, err := b.cons.Info(context.Background())
		if err != nil {
			return false, err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return false, fmt.Errorf("%d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
		}
		return true, nil
	})
}
