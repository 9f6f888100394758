package intake_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/intake"
	"github.com/crier-dev/crier/internal/metrics"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// count reads a counter.
func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

type bundle struct {
	store   *store.Store
	metrics *metrics.Metrics
	intake  *intake.Intake
}

func setup(t *testing.T) bundle {
	t.Helper()
	st := pgtest.NewStore(t)
	if err := example.Load(context.Background(), st, example.Components(), nil); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	now := func() time.Time { return time.Date(2025, 11, 10, 14, 0, 0, 0, time.UTC) }
	return bundle{store: st, metrics: m, intake: intake.New(st, m, now)}
}

const valid = `{"id":"2025-11-10-atlas-sync-0001","incident_id":"2025-11-10-atlas-sync","kind":"incident",
"status":"investigating","impact":"major","title":"Atlas Device Synchronisation Issues",
"components":["atlas-sync/sync-pod-a"],"occurred_at":"2025-11-10T13:35:00Z"}`

func TestAdmitsAValidEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev, verr, err := b.intake.Admit(context.Background(), []byte(valid), intake.Source{Via: "stream", Subject: "incidents.atlas", StreamSeq: 7})
	if err != nil || verr != nil {
		t.Fatalf("Admit: %v, %v", verr, err)
	}
	if ev.ID != "2025-11-10-atlas-sync-0001" || !ev.Notify {
		t.Errorf("event %+v", ev)
	}
	if n := count(t, b.metrics.EventsReceived.WithLabelValues("stream")); n != 1 {
		t.Errorf("received counted %v, want 1", n)
	}
	rej, err := b.store.ListRejected(context.Background(), 10)
	if err != nil || len(rej) != 0 {
		t.Errorf("rejected events: %v, %v; want none", rej, err)
	}
}

// Every refusal is recorded with its raw bytes, the field and the source,
// and counted by field; the id is kept when the event could be decoded.
func TestRefusalsAreRecordedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		name, raw, field, id string
		src                  intake.Source
	}{
		{"unknown component", `{"id":"e-1","incident_id":"i","kind":"incident","status":"investigating","impact":"major",
"title":"t","components":["atlas-sync/sync-pod-c"],"occurred_at":"2025-11-10T13:35:00Z"}`, "components", "e-1",
			intake.Source{Via: "stream", Subject: "incidents.x", StreamSeq: 3}},
		{"bad status", `{"id":"e-2","incident_id":"i","kind":"maintenance","status":"investigating","impact":"major",
"title":"t","components":["emar"],"occurred_at":"2025-11-10T13:35:00Z"}`, "status", "", intake.Source{Via: "http"}},
		{"not JSON", `{"id":`, "", "", intake.Source{Via: "http"}},
	}
	for _, c := range cases {
		_, verr, err := b.intake.Admit(context.Background(), []byte(c.raw), c.src)
		if err != nil || verr == nil || verr.Field != c.field {
			t.Fatalf("%s: Admit = %v, %v; want a refusal of field %q", c.name, verr, err, c.field)
		}
	}
	rej, err := b.store.ListRejected(context.Background(), 10)
	if err != nil || len(rej) != len(cases) {
		t.Fatalf("rejected events: %d, %v; want %d", len(rej), err, len(cases))
	}
	byRaw := map[string]store.Rejected{}
	for _, r := range rej {
		byRaw[string(r.Raw)] = r
	}
	for _, c := range cases {
		r, ok := byRaw[c.raw]
		wantSource := c.src.Via
		if c.src.Subject != "" {
			wantSource += ":" + c.src.Subject
		}
		if !ok || r.Field != c.field || r.EventID != c.id || r.Source != wantSource || r.StreamSeq != c.src.StreamSeq || r.Reason == "" {
			t.Errorf("%s: recorded %+v, want field %q, id %q, source %q, seq %d", c.name, r, c.field, c.id, wantSource, c.src.StreamSeq)
		}
	}
	if n := count(t, b.metrics.EventsRejected.WithLabelValues("components")); n != 1 {
		t.Errorf("rejections of components counted %v, want 1", n)
	}
}

// When the catalog cannot be read nothing is decided: no refusal, an error.
func TestNothingIsDecidedWithoutTheCatalog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.store.Close()
	_, verr, err := b.intake.Admit(context.Background(), []byte(valid), intake.Source{Via: "http"})
	if verr != nil || err == nil {
		t.Fatalf("Admit with the database closed: %v, %v; want an error and no refusal", verr, err)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatalf("unexpected %v", err)
	}
	if n := count(t, b.metrics.EventsRejected.WithLabelValues("")); n != 0 {
		t.Errorf("rejections counted %v, want 0", n)
	}
}
