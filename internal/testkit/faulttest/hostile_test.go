package faulttest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/event"
)

// hostileJSON returns an event's JSON with some fields replaced by raw JSON
// fragments (or dropped when the fragment is empty).
func hostileJSON(id string, fields map[string]string) []byte {
	f := map[string]string{
		"id": fmt.Sprintf("%q", id), "incident_id": fmt.Sprintf("%q", "inc-"+id), "kind": `"incident"`,
		"status": `"investigating"`, "impact": `"major"`, "title": `"eMar is slow"`, "body": `"Pages take a minute to load."`,
		"components": `["emar"]`, "occurred_at": fmt.Sprintf("%q", time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)),
	}
	for k, v := range fields {
		f[k] = v
	}
	var b bytes.Buffer
	b.WriteString("{")
	sep := ""
	for _, k := range []string{"id", "incident_id", "kind", "status", "impact", "title", "body", "components", "occurred_at"} {
		if f[k] == "" {
			continue
		}
		b.WriteString(sep + `"` + k + `":` + f[k])
		sep = ","
	}
	b.WriteString("}")
	return b.Bytes()
}

// publishRaw puts raw bytes on the stream with msgID, as a careless or
// hostile publisher could, and returns the stream sequence.
func (w *world) publishRaw(raw []byte, msgID string) uint64 {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := w.js.PublishMsg(ctx, &nats.Msg{
		Subject: "incidents.incident.hostile", Data: raw,
		Header: nats.Header{jetstream.MsgIDHeader: []string{msgID}},
	})
	if err != nil {
		w.t.Fatalf("publish %s (%d bytes): %v", msgID, len(raw), err)
	}
	return ack.Sequence
}

// TestHostileEvents publishes a table of hostile events to the stream and
// posts them to the API. Each ends either stored and sent safely (the email
// at the SMTP sink has no injected header and its HTML escapes the markup;
// template syntax stays text in email and SMS) or rejected with a reason
// (stored in rejected_events; over HTTP a 4xx naming the field). None stalls
// the consumer: a valid event published after them all is delivered.
func TestHostileEvents(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{keepMessages: true})
	subs := w.addSubscribers(2, "emar")
	p := w.start("crier", nil)

	many := `[` + strings.Repeat(`"emar",`, 9999) + `"emar"]`
	future := fmt.Sprintf("%q", time.Now().UTC().Add(10*365*24*time.Hour).Format(time.RFC3339))
	// Rejected wherever they come from. A 10 MB event exceeds NATS's
	// 1 MB maximum payload, so the stream gets a 900 kB body (over the
	// body limit of 20,000 characters) and the API and event.Decode get
	// the full 10 MB below.
	rejected := []struct {
		name, field string
		raw         []byte
		status      int // over HTTP
	}{
		{"invalid UTF-8", "", hostileJSON("h-utf8", map[string]string{"title": "\"bad \xff\xfe\""}), http.StatusBadRequest},
		{"900 kB body", "body", hostileJSON("h-big", map[string]string{"body": `"` + strings.Repeat("x", 900<<10) + `"`}), http.StatusUnprocessableEntity},
		{"10,000 components", "components", hostileJSON("h-many", map[string]string{"components": many}), http.StatusUnprocessableEntity},
		{"NUL in the title", "title", hostileJSON("h-nul", map[string]string{"title": `"a\u0000b"`}), http.StatusUnprocessableEntity},
		{"raw NUL byte", "", hostileJSON("h-nulbyte", map[string]string{"body": "\"a\x00b\""}), http.StatusBadRequest},
		{"CR LF in the title", "title", hostileJSON("h-crlf", map[string]string{"title": `"Outage\r\nBcc: everyone@attacker.example"`}), http.StatusUnprocessableEntity},
		{"timestamp far in the future", "occurred_at", hostileJSON("h-future", map[string]string{"occurred_at": future}), http.StatusUnprocessableEntity},
		{"unknown component", "components", hostileJSON("h-unknown", map[string]string{"components": `["../../etc/passwd"]`}), http.StatusUnprocessableEntity},
		{"not JSON", "", []byte("<html><script>alert(1)</script>"), http.StatusBadRequest},
	}
	// Stored and sent, safely.
	const (
		// A line separator in a title is refused (event.UnsafeInLine); in
		// the body it is text.
		markupTitle = "<script>alert(\"t\")</script> {{.}} ${jndi:x} Bcc: everyone@attacker.example"
		markupBody  = "<img src=x onerror=alert(1)> {{template \"email\" .}} {{.Title}}\r\n</body></html>\u2028Bcc: everyone@attacker.example"
	)
	markup := hostileJSON("h-markup", map[string]string{
		"title": jsonString(markupTitle), "body": jsonString(markupBody),
	})
	upper := hostileJSON("H-Case-1", map[string]string{"incident_id": `"inc-case-upper"`})
	lower := hostileJSON("h-case-1", map[string]string{"incident_id": `"inc-case-lower"`})
	nfc := hostileJSON("h-caf\u00e9", map[string]string{"incident_id": `"inc-cafe"`})
	nfd := hostileJSON("h-cafe\u0301", map[string]string{"incident_id": `"inc-cafe"`})

	seqs := map[string]uint64{}
	for i, r := range rejected {
		seqs[r.name] = w.publishRaw(r.raw, fmt.Sprintf("hostile-%d", i))
	}
	for i, raw := range [][]byte{markup, upper, lower, nfc, nfd} {
		w.publishRaw(raw, fmt.Sprintf("accepted-%d", i))
	}
	sentinel := newEvent("h-sentinel", "inc-sentinel", "emar")
	w.publish(sentinel)
	w.waitSettled(time.Minute, 4, sentinel.ID)

	// The consumer works on several messages at once: the sentinel can
	// finish before a large rejected event is recorded.
	var seqList []int64
	for _, q := range seqs {
		seqList = append(seqList, int64(q))
	}
	waitFor(t, "every hostile event to be recorded as rejected", 30*time.Second, func() bool {
		return w.count(`SELECT count(*) FROM rejected_events WHERE stream_seq = ANY($1)`, seqList) == len(rejected)
	})
	for _, r := range rejected {
		var reason, field string
		err := w.st.Pool().QueryRow(context.Background(),
			`SELECT reason, field FROM rejected_events WHERE stream_seq = $1`, int64(seqs[r.name])).Scan(&reason, &field)
		if err != nil {
			t.Errorf("%s: not in rejected_events: %v", r.name, err)
			continue
		}
		if strings.TrimSpace(reason) == "" || field != r.field {
			t.Errorf("%s: rejected with field %q reason %q; want field %q and a reason", r.name, field, reason, r.field)
		}
	}
	// Ids: case matters, Unicode form does not.
	for id, want := range map[string]int{"H-Case-1": 1, "h-case-1": 1, "h-caf\u00e9": 1, "h-cafe\u0301": 0, "h-markup": 1} {
		if n := w.count(`SELECT count(*) FROM events WHERE id = $1`, id); n != want {
			t.Errorf("event %q stored %d times, want %d", id, n, want)
		}
	}
	w.waitSettled(time.Minute, 4*5, "h-markup", "H-Case-1", "h-case-1", "h-caf\u00e9", sentinel.ID)
	if tl := w.sinks.tally(subs, 5); tl.missingEmail+tl.missingSMS+tl.dups() != 0 {
		t.Errorf("sinks: %s; want 5 messages per subscriber and channel", tl)
	}

	// The markup event as it arrived.
	var found bool
	for _, m := range w.sinks.smtp.Messages() {
		if !strings.Contains(m.Subject(), "alert") {
			continue
		}
		found = true
		t.Logf("markup email: Subject %q, headers %d", m.Header["Subject"], len(m.Header))
		if len(m.To) != 1 || !strings.HasSuffix(m.To[0], "@care.example") {
			t.Errorf("markup email went to %v", m.To)
		}
		for _, h := range []string{"Bcc", "Cc"} {
			if v := m.Header.Get(h); v != "" {
				t.Errorf("injected header %s: %q", h, v)
			}
		}
		if len(m.Header["Subject"]) != 1 || strings.ContainsAny(m.Subject(), "\r\n") {
			t.Errorf("Subject header %q", m.Header["Subject"])
		}
		parts, err := m.Parts()
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range parts {
			switch part.ContentType {
			case "text/html":
				if strings.Contains(part.Body, "<script>") || strings.Contains(part.Body, "<img src=x") {
					t.Errorf("HTML part carries the event's markup unescaped:\n%s", part.Body)
				}
				if !strings.Contains(part.Body, "&lt;script&gt;") && !strings.Contains(part.Body, "&lt;img") {
					t.Errorf("HTML part lacks the escaped markup:\n%s", part.Body)
				}
			case "text/plain":
				if !strings.Contains(part.Body, "{{template") || !strings.Contains(part.Body, "{{.}}") {
					t.Errorf("template syntax did not survive as text:\n%s", part.Body)
				}
			}
		}
	}
	if !found {
		t.Error("no email for the markup event reached the sink")
	}
	var sms bool
	for _, m := range w.sinks.twilio.Messages() {
		if strings.Contains(m.Body, "alert") {
			sms = true
			if !strings.Contains(m.Body, "{{.}}") {
				t.Errorf("SMS lost the literal template syntax: %q", m.Body)
			}
		}
	}
	if !sms {
		t.Error("no text for the markup event reached the sink")
	}

	// The same rejections over HTTP, and the 10 MB body the stream could
	// not carry.
	for _, r := range rejected {
		code, body := p.postEvent(r.raw)
		if code != r.status || !strings.Contains(body, `"error"`) {
			t.Errorf("POST %s: %d %s; want %d with an error", r.name, code, trim(body), r.status)
		}
		if r.field != "" && !strings.Contains(body, `"field":"`+r.field+`"`) {
			t.Errorf("POST %s: %s does not name the field %s", r.name, trim(body), r.field)
		}
	}
	huge := hostileJSON("h-huge", map[string]string{"body": `"` + strings.Repeat("x", 10<<20) + `"`})
	if code, body := p.postEvent(huge); code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST 10 MB event: %d %s, want 413", code, trim(body))
	}
	if _, err := event.Decode(huge, time.Now()); err == nil {
		t.Error("event.Decode accepted 10 MB")
	}
	// And the consumer still runs.
	after := newEvent("h-after", "inc-after", "emar")
	w.publish(after)
	w.waitSettled(time.Minute, 4, after.ID)
}

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteString(`\` + string(r))
		case r < 0x20 || r == 0x2028:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func trim(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
