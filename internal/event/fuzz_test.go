package event

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fuzzNow is the fixed "now" of the fuzz test, so that a crasher replays.
var fuzzNow = time.Date(2025, 11, 10, 14, 0, 0, 0, time.UTC)

// FuzzDecode: Decode never panics; every refusal is a *ValidationError
// (matching ErrInvalid) with a reason; every accepted event is normalised
// (ids in NFC, times in UTC, components unique and valid keys) and survives
// Encode and Decode unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"id":"2025-11-10-atlas-sync-0001","incident_id":"2025-11-10-atlas-sync","kind":"incident","status":"investigating","impact":"major","title":"Atlas Device Synchronisation Issues","body":"Some users are experiencing sync issues on Sync Pod A","components":["atlas-sync/sync-pod-a"],"occurred_at":"2025-11-10T13:35:00Z","notify":true}`,
		`{"id":"m1","incident_id":"m","kind":"maintenance","status":"scheduled","impact":"none","title":"Upgrade","components":["emar"],"occurred_at":"2025-11-10T13:35:00+01:00","scheduled_for":"2025-11-11T01:00:00Z","scheduled_until":"2025-11-11T02:00:00Z"}`,
		`{"id":"x","incident_id":"y","kind":"incident","status":"resolved","impact":"none","title":"<script>alert(1)</script> {{.}}","body":"<b>bold</b>\r\n{{template \"x\"}}\t","components":["capa","capa"],"occurred_at":"2025-11-10T13:35:00.123456789Z","notify":false}`,
		"{\"id\":\"Cafe\u0301\",\"incident_id\":\"e\u0301\",\"kind\":\"incident\",\"status\":\"update\",\"impact\":\"minor\",\"title\":\"t\",\"components\":[\"emar\"],\"occurred_at\":\"2025-11-10T13:35:00Z\"}",
		`{"id":"a\u0000b","incident_id":"y","kind":"incident","status":"update","impact":"minor","title":"t","components":["emar"],"occurred_at":"2025-11-10T13:35:00Z"}`,
		`{"id":"a","incident_id":"y","kind":"incident","status":"update","impact":"minor","title":"t\r\nBcc: x@example.com","components":["emar"],"occurred_at":"2025-11-10T13:35:00Z"}`,
		`{"id":"a","incident_id":"y","kind":"incident","status":"update","impact":"minor","title":"t","components":["emar"],"occurred_at":"9999-12-31T23:59:59Z"}`,
		`{"id":"a","incident_id":"y","kind":"incident","status":"update","impact":"minor","title":"t","components":["emar"],"occurred_at":"2025-11-10T13:35:00Z","extra":1}`,
		`{"id":"\ud800","incident_id":"y","kind":"incident","status":"update","impact":"minor","title":"\u2028","components":["Emar"],"occurred_at":"2025-11-10T13:35:00Z"}`,
		`{"id":1}`, `[]`, `null`, `{}`, `{"id":"a"} {"id":"b"}`, "", "\xff\xfe", `{"components":[` + strings.Repeat(`"a",`, 200) + `"a"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := Decode(raw, fuzzNow)
		if err != nil {
			var verr *ValidationError
			if !errors.As(err, &verr) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode(%q): error %T %v is not a *ValidationError", raw, err, err)
			}
			if strings.TrimSpace(verr.Reason) == "" {
				t.Fatalf("Decode(%q): rejection without a reason (field %q)", raw, verr.Field)
			}
			return
		}
		checkNormal(t, raw, ev)
		enc, err := Encode(ev)
		if err != nil {
			t.Fatalf("Encode(%+v): %v", ev, err)
		}
		again, err := Decode(enc, fuzzNow)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v; encoded %s", raw, err, enc)
		}
		if !reflect.DeepEqual(again, ev) {
			t.Fatalf("round trip changed the event:\n first %+v\nsecond %+v\n(raw %q)", ev, again, raw)
		}
	})
}

// checkNormal checks the invariants of an accepted event.
func checkNormal(t *testing.T, raw []byte, ev Event) {
	t.Helper()
	if ev.ID == "" || ev.IncidentID == "" || ev.Title == "" || len(ev.Components) == 0 {
		t.Fatalf("Decode(%q) accepted an event without a required field: %+v", raw, ev)
	}
	if strings.ContainsAny(ev.ID+ev.IncidentID+ev.Title, "\x00\r\n") || strings.ContainsRune(ev.Body, 0) {
		t.Fatalf("Decode(%q) accepted NUL or a line break in a single-line field: %+v", raw, ev)
	}
	if *nfc(&ev.ID) != ev.ID || *nfc(&ev.IncidentID) != ev.IncidentID {
		t.Fatalf("Decode(%q): ids not in NFC: %q %q", raw, ev.ID, ev.IncidentID)
	}
	if ev.OccurredAt.Location() != time.UTC || ev.OccurredAt.After(fuzzNow.Add(MaxFutureSkew)) {
		t.Fatalf("Decode(%q): occurred_at %v", raw, ev.OccurredAt)
	}
	seen := map[string]bool{}
	for _, k := range ev.Components {
		if !ValidKey(k) || seen[k] {
			t.Fatalf("Decode(%q): components %q", raw, ev.Components)
		}
		seen[k] = true
	}
	if len(raw) > MaxPayloadBytes {
		t.Fatalf("Decode accepted %d bytes", len(raw))
	}
}
