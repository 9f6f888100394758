package httpapi_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/alerting"
	"github.com/crier-dev/crier/internal/stream"
)

func payload(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile("../alerting/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestAlertmanagerIntake: Alertmanager's notification is published as an
// incident update; its repeat is a duplicate; its resolution is another
// update of the same incident.
func TestAlertmanagerIntake(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.call(t, "POST", "/v1/integrations/alertmanager", payload(t, "alertmanager-firing.json"))
	expectStatus(t, a, http.StatusAccepted)
	firing := a.json(t)["id"].(string)
	if !strings.HasPrefix(firing, "alertmanager-") || !strings.Contains(firing, "-investigating-") {
		t.Errorf("id %q", firing)
	}
	a = b.call(t, "POST", "/v1/integrations/alertmanager", payload(t, "alertmanager-firing.json"))
	expectStatus(t, a, http.StatusOK)
	if m := a.json(t); m["id"] != firing || m["duplicate"] != true {
		t.Errorf("the repeated notification: %s", a.body)
	}
	a = b.call(t, "POST", "/v1/integrations/alertmanager", payload(t, "alertmanager-resolved.json"))
	expectStatus(t, a, http.StatusAccepted)
	if id := a.json(t)["id"].(string); id == firing || !strings.Contains(id, "-resolved-") {
		t.Errorf("resolved id %q (firing %q)", id, firing)
	}
	s, err := b.js.Stream(context.Background(), stream.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil || info.State.Msgs != 2 {
		t.Errorf("%d messages in the stream (%v), want the firing and the resolved update", info.State.Msgs, err)
	}
}

// TestGrafanaIntake: Grafana's documented example body names no component;
// without a mapping it is refused with 422 naming the label, and recorded
// as rejected; with one it is published.
func TestGrafanaIntake(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.call(t, "POST", "/v1/integrations/grafana", payload(t, "grafana-firing.json"))
	expectStatus(t, a, http.StatusUnprocessableEntity)
	if !strings.Contains(a.String(), "alerts.labels.component") {
		t.Errorf("refusal %s does not name the label", a.body)
	}
	var rejected int
	if err := b.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM rejected_events WHERE source = 'grafana'`).Scan(&rejected); err != nil || rejected != 1 {
		t.Errorf("%d rejected notifications recorded (%v), want 1", rejected, err)
	}

	mapped := setup(t, func(o *setupOptions) {
		o.cfg.Alerts = alerting.Mapping{Components: map[string]string{"team=blue": "capa"}}
	})
	a = mapped.call(t, "POST", "/v1/integrations/grafana", payload(t, "grafana-firing.json"))
	expectStatus(t, a, http.StatusAccepted)
	// Not JSON at all: 400.
	expectStatus(t, mapped.call(t, "POST", "/v1/integrations/grafana", "not json"), http.StatusBadRequest)
}
