// Package event defines crier's incident event, its JSON wire format and its
// validation. Decoding never trusts the publisher: every rejection is a
// *ValidationError naming the field and a reason the publisher can act on.
package event

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Limits of the wire format.
const (
	MaxIDLen         = 200     // characters in id and incident_id
	MaxTitleLen      = 300     // characters in title
	MaxBodyLen       = 20000   // characters in body
	MaxComponents    = 100     // entries in components
	MaxPayloadBytes  = 1 << 20 // bytes of one encoded event
	MaxFutureSkew    = 24 * time.Hour
	maxComponentKeyL = 200
)

// Kinds of event.
const (
	KindIncident    = "incident"
	KindMaintenance = "maintenance"
	// KindDrill is a rehearsal: a clearly marked test sent to every home
	// on its components, asking them to acknowledge (status "test").
	KindDrill = "drill"
)

var statuses = map[string][]string{
	KindIncident:    {"investigating", "identified", "monitoring", "update", "resolved", "postmortem"},
	KindMaintenance: {"scheduled", "in_progress", "verifying", "completed"},
	KindDrill:       {"test"},
}

var impacts = []string{"none", "minor", "major", "critical"}

// Event is one update of an incident or a maintenance window.
type Event struct {
	ID             string     `json:"id"`
	IncidentID     string     `json:"incident_id"`
	Kind           string     `json:"kind"`
	Status         string     `json:"status"`
	Impact         string     `json:"impact"`
	Title          string     `json:"title"`
	Body           string     `json:"body"`
	Components     []string   `json:"components"`
	OccurredAt     time.Time  `json:"occurred_at"`
	ScheduledFor   *time.Time `json:"scheduled_for,omitempty"`
	ScheduledUntil *time.Time `json:"scheduled_until,omitempty"`
	Notify         bool       `json:"notify"`
	// Escalate makes a drill escalate, as an incident does, when a home
	// does not acknowledge in time (drills only; default false).
	Escalate bool `json:"escalate,omitempty"`
}

// ValidationError says why an event was refused: the field at fault (empty
// when the payload as a whole is bad) and a reason.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return "invalid event: " + e.Reason
	}
	return fmt.Sprintf("invalid event: %s: %s", e.Field, e.Reason)
}

// ErrInvalid is matched by every *ValidationError with errors.Is.
var ErrInvalid = errors.New("invalid event")

// Is makes errors.Is(err, ErrInvalid) true for validation errors.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// wire mirrors Event with pointers so that a missing field can be told apart
// from an empty one.
type wire struct {
	ID             *string   `json:"id"`
	IncidentID     *string   `json:"incident_id"`
	Kind           *string   `json:"kind"`
	Status         *string   `json:"status"`
	Impact         *string   `json:"impact"`
	Title          *string   `json:"title"`
	Body           *string   `json:"body"`
	Components     *[]string `json:"components"`
	OccurredAt     *string   `json:"occurred_at"`
	ScheduledFor   *string   `json:"scheduled_for"`
	ScheduledUntil *string   `json:"scheduled_until"`
	Notify         *bool     `json:"notify"`
	Escalate       *bool     `json:"escalate"`
}

// Decode parses and validates one event. now bounds how far in the future
// occurred_at may lie. Component keys are checked for syntax only; whether
// they exist in the catalog is CheckComponents' job.
func Decode(raw []byte, now time.Time) (Event, error) {
	if len(raw) > MaxPayloadBytes {
		return Event{}, invalid("", "payload is %d bytes, more than the limit of %d", len(raw), MaxPayloadBytes)
	}
	if !utf8.Valid(raw) {
		return Event{}, invalid("", "payload is not valid UTF-8")
	}
	if key, dup := DuplicateKey(raw); dup {
		return Event{}, invalid(key, "appears more than once; send each field once")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var w wire
	if err := dec.Decode(&w); err != nil {
		return Event{}, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Event{}, invalid("", "payload holds more than one JSON value")
	}
	return w.validate(now)
}

func jsonError(err error) *ValidationError {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return invalid(typeErr.Field, "must be a JSON %s, not %s", typeErr.Type.Kind(), typeErr.Value)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return invalid("", "malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return invalid(strings.Trim(name, `"`), "unknown field")
	}
	if errors.Is(err, io.EOF) {
		return invalid("", "payload is empty")
	}
	return invalid("", "malformed JSON: %v", err)
}

func (w *wire) validate(now time.Time) (Event, error) {
	var ev Event
	var err error
	// Ids are compared byte for byte after Unicode NFC normalisation, so
	// that one id typed on two systems (one composing "é", the other
	// decomposing it) names one event. Case is significant.
	w.ID, w.IncidentID = nfc(w.ID), nfc(w.IncidentID)
	if ev.ID, err = requiredText("id", w.ID, MaxIDLen, true); err != nil {
		return Event{}, err
	}
	if ev.IncidentID, err = requiredText("incident_id", w.IncidentID, MaxIDLen, true); err != nil {
		return Event{}, err
	}
	if ev.Kind, err = requiredText("kind", w.Kind, 20, true); err != nil {
		return Event{}, err
	}
	allowed, ok := statuses[ev.Kind]
	if !ok {
		return Event{}, invalid("kind", "must be %q, %q or %q, not %q", KindIncident, KindMaintenance, KindDrill, ev.Kind)
	}
	if ev.Status, err = requiredText("status", w.Status, 20, true); err != nil {
		return Event{}, err
	}
	if !slices.Contains(allowed, ev.Status) {
		return Event{}, invalid("status", "%q is not a status of kind %s (one of %s)", ev.Status, ev.Kind, strings.Join(allowed, ", "))
	}
	if ev.Impact, err = requiredText("impact", w.Impact, 20, true); err != nil {
		return Event{}, err
	}
	if !slices.Contains(impacts, ev.Impact) {
		return Event{}, invalid("impact", "must be one of %s, not %q", strings.Join(impacts, ", "), ev.Impact)
	}
	if ev.Title, err = requiredText("title", w.Title, MaxTitleLen, true); err != nil {
		return Event{}, err
	}
	if w.Body != nil {
		if ev.Body, err = requiredText("body", w.Body, MaxBodyLen, false); err != nil {
			return Event{}, err
		}
	}
	if ev.Components, err = components(w.Components); err != nil {
		return Event{}, err
	}
	if ev.OccurredAt, err = timestamp("occurred_at", w.OccurredAt, true); err != nil {
		return Event{}, err
	}
	if ev.OccurredAt.After(now.Add(MaxFutureSkew)) {
		return Event{}, invalid("occurred_at", "%s is more than %s in the future", ev.OccurredAt.Format(time.RFC3339), MaxFutureSkew)
	}
	if ev.ScheduledFor, err = optionalTimestamp("scheduled_for", w.ScheduledFor); err != nil {
		return Event{}, err
	}
	if ev.ScheduledUntil, err = optionalTimestamp("scheduled_until", w.ScheduledUntil); err != nil {
		return Event{}, err
	}
	if ev.Kind == KindMaintenance {
		if ev.ScheduledFor == nil {
			return Event{}, invalid("scheduled_for", "is required for maintenance")
		}
		if ev.ScheduledUntil == nil {
			return Event{}, invalid("scheduled_until", "is required for maintenance")
		}
	}
	if ev.ScheduledFor != nil && ev.ScheduledUntil != nil && ev.ScheduledUntil.Before(*ev.ScheduledFor) {
		return Event{}, invalid("scheduled_until", "is before scheduled_for")
	}
	ev.Notify = w.Notify == nil || *w.Notify
	if w.Escalate != nil {
		if ev.Kind != KindDrill {
			return Event{}, invalid("escalate", "is for drills only: incidents always escalate")
		}
		ev.Escalate = *w.Escalate
	}
	return ev, nil
}

// nfc returns a pointer to the NFC normalisation of *v (nil for nil).
func nfc(v *string) *string {
	if v == nil || norm.NFC.IsNormalString(*v) {
		return v
	}
	s := norm.NFC.String(*v)
	return &s
}

// requiredText checks a string field: present (when required), not blank,
// within max characters, and free of NUL and (for single-line fields)
// control characters.
func requiredText(field string, v *string, max int, singleLine bool) (string, error) {
	if v == nil {
		return "", invalid(field, "is required")
	}
	s := *v
	if singleLine && strings.TrimSpace(s) == "" {
		return "", invalid(field, "must not be empty")
	}
	if n := utf8.RuneCountInString(s); n > max {
		return "", invalid(field, "is %d characters, more than the limit of %d", n, max)
	}
	for _, r := range s {
		switch {
		case r == 0:
			return "", invalid(field, "must not contain NUL characters")
		case singleLine && UnsafeInLine(r):
			return "", invalid(field, "must be a single line without control or formatting characters (such as U+%04X)", r)
		case !singleLine && unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t':
			return "", invalid(field, "must not contain control characters other than newlines and tabs")
		}
	}
	return s, nil
}

// UnsafeInLine reports whether r must not appear in a single-line field
// that reaches subjects, texts and pages (titles, names): a control
// character, a formatting character (Unicode Cf, such as the bidirectional
// override U+202E, which makes what follows read backwards) or a line or
// paragraph separator (Zl, Zp).
func UnsafeInLine(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

func components(v *[]string) ([]string, error) {
	if v == nil || len(*v) == 0 {
		return nil, invalid("components", "is required: name at least one component key")
	}
	keys := *v
	if len(keys) > MaxComponents {
		return nil, invalid("components", "names %d components, more than the limit of %d", len(keys), MaxComponents)
	}
	out := make([]string, 0, len(keys))
	for i, k := range keys {
		if !ValidKey(k) {
			return nil, invalid("components", "entry %d (%.60q) is not a component key (lower-case letters, digits and dashes, groups separated by /)", i, k)
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out, nil
}

// ValidKey reports whether k is syntactically a component key: segments of
// lower-case ASCII letters, digits and dashes (not starting with a dash),
// separated by "/". It matches the CHECK constraint on components.key.
func ValidKey(k string) bool {
	if k == "" || len(k) > maxComponentKeyL {
		return false
	}
	for seg := range strings.SplitSeq(k, "/") {
		if seg == "" || len(seg) > 63 || seg[0] == '-' {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func timestamp(field string, v *string, required bool) (time.Time, error) {
	if v == nil {
		if required {
			return time.Time{}, invalid(field, "is required (RFC 3339, e.g. 2025-11-10T13:35:00Z)")
		}
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *v)
	if err != nil {
		return time.Time{}, invalid(field, "%.40q is not an RFC 3339 timestamp such as 2025-11-10T13:35:00Z", *v)
	}
	if t.Year() < 2000 || t.Year() > 9999 {
		return time.Time{}, invalid(field, "year %d is out of range", t.Year())
	}
	return t.UTC(), nil
}

func optionalTimestamp(field string, v *string) (*time.Time, error) {
	if v == nil {
		return nil, nil
	}
	t, err := timestamp(field, v, true)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// CheckComponents reports the first component of ev that is not in the
// catalog, as a *ValidationError.
func CheckComponents(ev Event, known func(key string) bool) error {
	for _, k := range ev.Components {
		if !known(k) {
			return invalid("components", "unknown component %q", k)
		}
	}
	return nil
}

// Encode returns the wire form of ev.
func Encode(ev Event) ([]byte, error) {
	type plain Event // drop methods, keep tags
	return json.Marshal(plain(ev))
}

// Subject is the JetStream subject an event is published on:
// incidents.<kind>.<incident id made subject-safe>.
func Subject(ev Event) string {
	var b strings.Builder
	b.WriteString("incidents.")
	b.WriteString(ev.Kind)
	b.WriteByte('.')
	for _, r := range ev.IncidentID {
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

var wireFields = map[string]bool{
	"id": true, "incident_id": true, "kind": true, "status": true, "impact": true,
	"title": true, "body": true, "components": true, "occurred_at": true,
	"scheduled_for": true, "scheduled_until": true, "notify": true,
}

// MetricField maps the field of a ValidationError to a bounded metric label:
// the field name for wire-format fields, "payload" for anything else (a
// publisher's unknown field name must not create a new time series).
func MetricField(field string) string {
	if wireFields[field] {
		return field
	}
	return "payload"
}

// Priorities of deliveries, highest first (DESIGN.md, "Scheduling"): the
// delivery queue takes the highest priority that is due, FIFO within it.
const (
	PriorityCritical = 3 // incident, impact critical
	PriorityMajor    = 2 // incident, impact major
	PriorityMinor    = 1 // incident, impact minor or none
	PriorityRoutine  = 0 // maintenance, reminders, drills
)

// Priority is the priority of ev's deliveries, from its own kind and
// impact. A resolution ranks with its incident's highest impact, which
// only the store knows (see ImpactPriority).
func Priority(ev Event) int {
	if ev.Kind != KindIncident {
		return PriorityRoutine
	}
	return ImpactPriority(ev.Impact)
}

// ImpactPriority is the priority of an incident update of the given impact.
func ImpactPriority(impact string) int {
	switch impact {
	case "critical":
		return PriorityCritical
	case "major":
		return PriorityMajor
	default:
		return PriorityMinor
	}
}

// RanksWithIncident reports whether ev takes the highest priority of its
// incident's updates rather than its own: a resolution (or its
// post-mortem) must reach everyone who was told of the outage as early.
func RanksWithIncident(ev Event) bool {
	return ev.Kind == KindIncident && (ev.Status == "resolved" || ev.Status == "postmortem")
}

// NewDrill is the event of a drill started at now: its own incident, of
// one update with status test, impact none; title "Alerting drill" unless
// given. Its id is "drill-" with the time and a random suffix.
func NewDrill(now time.Time, components []string, title, body string, escalate bool) Event {
	now = now.UTC().Truncate(time.Second)
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := "drill-" + now.Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	if strings.TrimSpace(title) == "" {
		title = "Alerting drill"
	}
	return Event{
		ID: id, IncidentID: id, Kind: KindDrill, Status: "test", Impact: "none",
		Title: title, Body: body, Components: components, OccurredAt: now, Notify: true, Escalate: escalate,
	}
}
