package alerting

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/event"
)

func load(t *testing.T, name string) Payload {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// valid fails the test unless ev is an event crier accepts.
func valid(t *testing.T, ev event.Event) {
	t.Helper()
	raw, err := event.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := event.Decode(raw, time.Now()); err != nil {
		t.Fatalf("the event is not valid: %v\n%s", err, raw)
	}
}

func TestAlertmanagerFiringAndResolved(t *testing.T) {
	firing, err := Mapping{}.Event("alertmanager", load(t, "alertmanager-firing.json"))
	if err != nil {
		t.Fatal(err)
	}
	valid(t, firing)
	if firing.Status != "investigating" || firing.Impact != "critical" || len(firing.Components) != 1 || firing.Components[0] != "emar" ||
		firing.Title != "eMar is not answering" || !strings.Contains(firing.Body, "paper medication charts") ||
		!firing.OccurredAt.Equal(time.Date(2026, 12, 6, 9, 10, 0, 0, time.UTC)) || !strings.HasPrefix(firing.IncidentID, "alertmanager-") {
		t.Errorf("firing: %+v", firing)
	}
	again, _ := Mapping{}.Event("alertmanager", load(t, "alertmanager-firing.json"))
	if again.ID != firing.ID {
		t.Errorf("a repeated notification is a new update: %s, then %s", firing.ID, again.ID)
	}
	resolved, err := Mapping{}.Event("alertmanager", load(t, "alertmanager-resolved.json"))
	if err != nil {
		t.Fatal(err)
	}
	valid(t, resolved)
	if resolved.Status != "resolved" || resolved.IncidentID != firing.IncidentID || resolved.ID == firing.ID ||
		!resolved.OccurredAt.Equal(time.Date(2026, 12, 6, 9, 42, 0, 0, time.UTC)) {
		t.Errorf("resolved: %+v (firing %+v)", resolved, firing)
	}
	// Another alert joining the group is a new update of the same incident.
	p := load(t, "alertmanager-firing.json")
	second := p.Alerts[0]
	second.Fingerprint, second.Labels = "0123456789abcdef", map[string]string{"instance": "emar-2:443"}
	p.Alerts = append(p.Alerts, second)
	joined, _ := Mapping{}.Event("alertmanager", p)
	if joined.ID == firing.ID || joined.IncidentID != firing.IncidentID {
		t.Errorf("an alert joining the group: id %s (was %s), incident %s", joined.ID, firing.ID, joined.IncidentID)
	}
}

// TestGrafanaDocumentedPayload reads Grafana's documented example body,
// whose alerts carry no component label: the mapping names it.
func TestGrafanaDocumentedPayload(t *testing.T) {
	p := load(t, "grafana-firing.json")
	if _, err := (Mapping{}).Event("grafana", p); err == nil {
		t.Fatal("alerts without a component label nor a mapping became an event")
	} else if e := (*event.ValidationError)(nil); !errors.As(err, &e) || e.Field != "alerts.labels.component" {
		t.Errorf("error %v, want one naming alerts.labels.component", err)
	}
	m := Mapping{Components: map[string]string{"zone=us-1": "atlas-sync/sync-pod-a", "zone=eu-1": "atlas-sync/sync-pod-b"}}
	ev, err := m.Event("grafana", p)
	if err != nil {
		t.Fatal(err)
	}
	valid(t, ev)
	if ev.Status != "investigating" || ev.Impact != "minor" || strings.Join(ev.Components, ",") != "atlas-sync/sync-pod-a,atlas-sync/sync-pod-b" ||
		ev.Title != "This alert was triggered for zone us-1" || !strings.Contains(ev.Body, "high CPU usage") ||
		!ev.OccurredAt.Equal(time.Date(2021, 10, 12, 7, 51, 3, 157000000, time.UTC)) || !strings.HasPrefix(ev.IncidentID, "grafana-") {
		t.Errorf("event %+v", ev)
	}
}

func TestBadNotifications(t *testing.T) {
	for name, edit := range map[string]func(*Payload){
		"status":   func(p *Payload) { p.Status = "pending" },
		"groupKey": func(p *Payload) { p.GroupKey = "" },
		"alerts":   func(p *Payload) { p.Alerts = nil },
	} {
		p := load(t, "alertmanager-firing.json")
		edit(&p)
		_, err := Mapping{}.Event("alertmanager", p)
		var e *event.ValidationError
		if !errors.As(err, &e) || e.Field != name {
			t.Errorf("%s: error %v, want one naming %s", name, err, name)
		}
	}
	if _, err := Decode([]byte(`[1, 2]`)); err == nil {
		t.Error("a JSON array decoded as a notification")
	}
}
