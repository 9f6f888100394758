// Package alerting turns the notifications of monitoring systems into
// crier events, so that they publish incidents without glue code:
// Prometheus Alertmanager's webhook (payload version 4) and Grafana
// Alerting's webhook contact point, which sends the same shape (version 1)
// with a few fields more.
//
// One alert group is one incident: its groupKey names it. "firing" is an
// update with status investigating, "resolved" one with status resolved.
// The update's id is derived from the group, its status and the alerts
// firing in it, so the notification Alertmanager repeats every
// repeat_interval is the same event (a duplicate, dropped), while an alert
// joining or leaving the group is a new update.
package alerting

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/event"
)

// Payload is a webhook notification of Alertmanager or Grafana.
type Payload struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []Alert           `json:"alerts"`
	// Grafana only.
	Title string `json:"title"`
}

// Alert is one alert of a notification.
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Mapping says how alerts name crier's components and impacts.
type Mapping struct {
	// ComponentLabel is the label whose value is a component key
	// (default "component").
	ComponentLabel string
	// Components maps "label=value" to a component key, for alerts that
	// carry no component label (CRIER_ALERT_COMPONENTS).
	Components map[string]string
}

// DefaultComponentLabel is the label read when Mapping names none.
const DefaultComponentLabel = "component"

// Decode reads a notification. A notification that cannot become an event
// (here or in Mapping.Event) is an *event.ValidationError naming the part
// at fault.
func Decode(raw []byte) (Payload, error) {
	var p Payload
	if err := json.Unmarshal(raw, &p); err != nil {
		return Payload{}, &event.ValidationError{Reason: "not an alert notification: " + err.Error()}
	}
	return p, nil
}

// Event is the update of the incident that p notifies, from source
// ("alertmanager" or "grafana", which also prefixes the incident id).
func (m Mapping) Event(source string, p Payload) (event.Event, error) {
	var status string
	switch p.Status {
	case "firing":
		status = "investigating"
	case "resolved":
		status = "resolved"
	default:
		return event.Event{}, &event.ValidationError{Field: "status", Reason: fmt.Sprintf("must be firing or resolved, not %q", p.Status)}
	}
	if p.GroupKey == "" {
		return event.Event{}, &event.ValidationError{Field: "groupKey", Reason: "is required: it names the incident"}
	}
	if len(p.Alerts) == 0 {
		return event.Event{}, &event.ValidationError{Field: "alerts", Reason: "is empty"}
	}
	components, err := m.components(p)
	if err != nil {
		return event.Event{}, err
	}
	incident := source + "-" + digest(p.GroupKey)
	return event.Event{
		ID:         incident + "-" + status + "-" + digest(p.Status, strings.Join(firing(p), ",")),
		IncidentID: incident, Kind: event.KindIncident, Status: status, Impact: impact(p),
		Title: title(p), Body: body(p), Components: components,
		OccurredAt: occurredAt(p), Notify: true,
	}, nil
}

// components collects the components the alerts name, in order.
func (m Mapping) components(p Payload) ([]string, error) {
	label := cmp.Or(m.ComponentLabel, DefaultComponentLabel)
	var out []string
	add := func(key string) {
		if key != "" && !slices.Contains(out, key) {
			out = append(out, key)
		}
	}
	for _, a := range p.Alerts {
		labels := merged(p.CommonLabels, a.Labels)
		add(labels[label])
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			add(m.Components[k+"="+labels[k]])
		}
	}
	if len(out) == 0 {
		return nil, &event.ValidationError{Field: "alerts.labels." + label, Reason: fmt.Sprintf("no alert has a %q label or a label mapped to a component (CRIER_ALERT_COMPONENTS)", label)}
	}
	return out, nil
}

// firing lists the fingerprints (or, without one, the labels) of the alerts
// that are firing, sorted: the state of the group.
func firing(p Payload) []string {
	var out []string
	for _, a := range p.Alerts {
		if a.Status != "firing" {
			continue
		}
		id := a.Fingerprint
		if id == "" {
			id = labelString(a.Labels)
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// impact maps the highest severity label of the alerts to an impact.
func impact(p Payload) string {
	rank := map[string]int{"none": 0, "minor": 1, "major": 2, "critical": 3}
	best := "minor"
	for _, a := range p.Alerts {
		imp := severityImpact(merged(p.CommonLabels, a.Labels)["severity"])
		if rank[imp] > rank[best] {
			best = imp
		}
	}
	return best
}

// severityImpact maps common severity names to impacts; anything else is
// minor.
func severityImpact(s string) string {
	switch strings.ToLower(s) {
	case "critical", "page", "emergency", "fatal":
		return "critical"
	case "error", "major", "high":
		return "major"
	}
	return "minor"
}

func title(p Payload) string {
	t := cmp.Or(p.CommonAnnotations["summary"], p.CommonLabels["alertname"])
	if t == "" && len(p.Alerts) > 0 {
		t = cmp.Or(p.Alerts[0].Annotations["summary"], p.Alerts[0].Labels["alertname"])
	}
	t = cmp.Or(t, strings.TrimSpace(p.Title), "Alert")
	return truncate(strings.Join(strings.Fields(t), " "), event.MaxTitleLen)
}

// body is the common description, or each alert's summary and description.
func body(p Payload) string {
	if d := p.CommonAnnotations["description"]; d != "" {
		return truncate(d, event.MaxBodyLen)
	}
	var b strings.Builder
	for _, a := range p.Alerts {
		line := strings.TrimSpace(strings.Join([]string{a.Annotations["summary"], a.Annotations["description"]}, " "))
		if line == "" {
			line = a.Labels["alertname"]
		}
		if line != "" {
			if b.Len() > 0 {
				b.WriteString("\n")
			}
			b.WriteString(line)
		}
	}
	return truncate(b.String(), event.MaxBodyLen)
}

// occurredAt is when the group started firing, or when its last alert
// resolved.
func occurredAt(p Payload) time.Time {
	var at time.Time
	for _, a := range p.Alerts {
		t := a.StartsAt
		if p.Status == "resolved" {
			t = a.EndsAt
		}
		if t.IsZero() || t.Year() <= 1 {
			continue
		}
		switch {
		case at.IsZero(), p.Status == "firing" && t.Before(at), p.Status == "resolved" && t.After(at):
			at = t
		}
	}
	if at.IsZero() {
		at = time.Now()
	}
	return at.UTC().Truncate(time.Millisecond)
}

// merged is an alert's labels over the group's common ones.
func merged(common, own map[string]string) map[string]string {
	out := maps.Clone(common)
	if out == nil {
		out = make(map[string]string, len(own))
	}
	maps.Copy(out, own)
	return out
}

func labelString(l map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(l)) {
		fmt.Fprintf(&b, "%s=%q,", k, l[k])
	}
	return b.String()
}

// digest is a short, stable hash of parts: ids stay short and free of the
// braces and quotes a groupKey holds.
func digest(parts ...string) string {
	h := sha256.New()
	for _, s := range parts {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func truncate(s string, max int) string {
	r := []rune(s)
	if len(r) <= max {
		return s
	}
	return string(r[:max-1]) + "…"
}
