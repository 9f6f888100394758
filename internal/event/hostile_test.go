package event

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// hostile builds an event's JSON from a valid one with fields replaced by
// raw JSON fragments.
func hostile(fields map[string]string) []byte {
	base := map[string]string{
		"id": `"h-1"`, "incident_id": `"inc-h"`, "kind": `"incident"`, "status": `"investigating"`,
		"impact": `"major"`, "title": `"Atlas Device Synchronisation Issues"`, "body": `"Sync is slow."`,
		"components": `["emar"]`, "occurred_at": `"2025-11-10T13:35:00Z"`,
	}
	for k, v := range fields {
		base[k] = v
	}
	var b strings.Builder
	b.WriteString("{")
	first := true
	for _, k := range []string{"id", "incident_id", "kind", "status", "impact", "title", "body", "components", "occurred_at", "notify"} {
		v, ok := base[k]
		if !ok {
			continue
		}
		if !first {
			b.WriteString(",")
		}
		first = false
		b.WriteString(`"` + k + `":` + v)
	}
	b.WriteString("}")
	return []byte(b.String())
}

// TestDecodeHostile: each hostile event is either accepted unchanged (the
// renderers escape it) or rejected with a *ValidationError naming the
// field and a reason.
func TestDecodeHostile(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 11, 10, 14, 0, 0, 0, time.UTC)
	manyComponents := `[` + strings.Repeat(`"emar",`, 9999) + `"emar"]`
	cases := []struct {
		name  string
		raw   []byte
		field string // "" with reject: the payload as a whole
		// reject says the event must be refused; otherwise check looks at
		// the accepted event.
		reject bool
		check  func(t *testing.T, ev Event)
	}{
		{name: "invalid UTF-8 in the title", raw: hostile(map[string]string{"title": "\"bad \xff\xfe byte\""}), reject: true},
		{name: "10 MB body", raw: hostile(map[string]string{"body": `"` + strings.Repeat("a", 10<<20) + `"`}), reject: true},
		{name: "body over 20,000 characters", raw: hostile(map[string]string{"body": `"` + strings.Repeat("é", MaxBodyLen+1) + `"`}), field: "body", reject: true},
		{name: "10,000 components", raw: hostile(map[string]string{"components": manyComponents}), field: "components", reject: true},
		{name: "escaped NUL in the title", raw: hostile(map[string]string{"title": `"a\u0000b"`}), field: "title", reject: true},
		{name: "escaped NUL in the body", raw: hostile(map[string]string{"body": `"a\u0000b"`}), field: "body", reject: true},
		{name: "raw NUL byte", raw: hostile(map[string]string{"title": "\"a\x00b\""}), reject: true},
		{name: "NUL in the id", raw: hostile(map[string]string{"id": `"h\u0000-1"`}), field: "id", reject: true},
		{name: "CR LF in the title", raw: hostile(map[string]string{"title": `"Outage\r\nBcc: everyone@example.com"`}), field: "title", reject: true},
		{name: "LF in the incident id", raw: hostile(map[string]string{"incident_id": `"inc\nX-Header: 1"`}), field: "incident_id", reject: true},
		{name: "NEL (U+0085) in the title", raw: hostile(map[string]string{"title": `"a\u0085b"`}), field: "title", reject: true},
		{name: "timestamp far in the future", raw: hostile(map[string]string{"occurred_at": `"3025-11-10T13:35:00Z"`}), field: "occurred_at", reject: true},
		{name: "timestamp 25 hours ahead", raw: hostile(map[string]string{"occurred_at": `"2025-11-11T15:00:00Z"`}), field: "occurred_at", reject: true},
		{name: "year 10000", raw: hostile(map[string]string{"occurred_at": `"10000-01-01T00:00:00Z"`}), field: "occurred_at", reject: true},
		{name: "year 1", raw: hostile(map[string]string{"occurred_at": `"0001-01-01T00:00:00Z"`}), field: "occurred_at", reject: true},
		{name: "unknown field", raw: []byte(`{"id":"h-1","__proto__":{}}`), field: "__proto__", reject: true},
		{name: "two JSON values", raw: append(hostile(nil), hostile(nil)...), reject: true},
		{name: "a key twice (the last would win)", raw: []byte(`{"id":"h-1","incident_id":"inc-h","kind":"incident","status":"investigating","impact":"major","impact":"none","title":"t","components":["emar"],"occurred_at":"2025-11-10T13:35:00Z"}`), field: "impact", reject: true},
		{
			name: "HTML and template syntax are kept as text",
			raw:  hostile(map[string]string{"title": `"<script>alert(1)</script> {{.}}"`, "body": `"<img src=x onerror=alert(1)> {{template \"x\"}} {{.Title}}\r\n</body>"`}),
			check: func(t *testing.T, ev Event) {
				if ev.Title != "<script>alert(1)</script> {{.}}" || !strings.Contains(ev.Body, `{{template "x"}}`) {
					t.Errorf("changed: %q / %q", ev.Title, ev.Body)
				}
			},
		},
		{
			name: "timestamp 23 hours ahead",
			raw:  hostile(map[string]string{"occurred_at": `"2025-11-11T13:00:00+00:00"`}),
			check: func(t *testing.T, ev Event) {
				if !ev.OccurredAt.Equal(now.Add(23 * time.Hour)) {
					t.Errorf("occurred_at %v", ev.OccurredAt)
				}
			},
		},
		{name: "line separator (U+2028) in the title", raw: hostile(map[string]string{"title": `"a\u2028b"`}), field: "title", reject: true},
		{name: "paragraph separator (U+2029) in the title", raw: hostile(map[string]string{"title": `"a\u2029b"`}), field: "title", reject: true},
		{name: "right-to-left override (U+202E) in the title", raw: hostile(map[string]string{"title": `"Sync restored \u202Edetaer ton"`}), field: "title", reject: true},
		{name: "zero-width space (U+200B, Cf) in the incident id", raw: hostile(map[string]string{"incident_id": `"inc\u200b-1"`}), field: "incident_id", reject: true},
		{
			name: "a right-to-left override in the body is kept (free text, not a subject)",
			raw:  hostile(map[string]string{"body": `"a\u202Eb"`}),
			check: func(t *testing.T, ev Event) {
				if ev.Body != "a\u202Eb" {
					t.Errorf("body %q", ev.Body)
				}
			},
		},
	}
	for _, tc := range cases {
		ev, err := Decode(tc.raw, now)
		if !tc.reject {
			if err != nil {
				t.Errorf("%s: rejected: %v", tc.name, err)
				continue
			}
			tc.check(t, ev)
			continue
		}
		var verr *ValidationError
		if !errors.As(err, &verr) {
			t.Errorf("%s: Decode = %+v, %v; want a *ValidationError", tc.name, ev, err)
			continue
		}
		if verr.Field != tc.field || strings.TrimSpace(verr.Reason) == "" {
			t.Errorf("%s: rejected with field %q reason %q; want field %q and a reason", tc.name, verr.Field, verr.Reason, tc.field)
		}
	}
}

// TestDecodeIDs: ids that differ only in case are different events; ids
// that differ only in Unicode normalisation form are the same event (both
// decode to the NFC form).
func TestDecodeIDs(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 11, 10, 14, 0, 0, 0, time.UTC)
	decode := func(id, incident string) Event {
		t.Helper()
		ev, err := Decode(hostile(map[string]string{"id": `"` + id + `"`, "incident_id": `"` + incident + `"`}), now)
		if err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		return ev
	}
	if a, b := decode("Outage-1", "inc"), decode("outage-1", "inc"); a.ID == b.ID {
		t.Errorf("ids differing in case decode to one id %q", a.ID)
	}
	composed, decomposed := decode("caf\u00e9-1", "inc-caf\u00e9"), decode("cafe\u0301-1", "inc-cafe\u0301")
	if composed.ID != "caf\u00e9-1" || decomposed.ID != composed.ID || decomposed.IncidentID != composed.IncidentID {
		t.Errorf("NFC %q/%q and NFD %q/%q should decode to the NFC form", composed.ID, composed.IncidentID, decomposed.ID, decomposed.IncidentID)
	}
	// A compatibility variant is a different id: NFC, not NFKC.
	if lig := decode("\ufb01le-1", "inc"); lig.ID != "\ufb01le-1" {
		t.Errorf("ligature id became %q", lig.ID)
	}
}
