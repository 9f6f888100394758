package serve_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/render"
	"github.com/crier-dev/crier/internal/serve"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/mailpittest"
)

// emailSubscribers: who gets which updates of the 10 November incident.
var emailSubscribers = []subscriber{
	{label: "group", NewSubscriber: store.NewSubscriber{Email: "group@care.example", Components: []string{"atlas-sync"}, ConfirmEmail: true}},
	{label: "pod-b", NewSubscriber: store.NewSubscriber{Email: "podb@care.example", Components: []string{"atlas-sync/sync-pod-b"}, ConfirmEmail: true}},
	{label: "emar", NewSubscriber: store.NewSubscriber{Email: "emar@care.example", Components: []string{"emar"}, ConfirmEmail: true}},
	{label: "unconfirmed", NewSubscriber: store.NewSubscriber{Email: "unconfirmed@care.example", Components: []string{"atlas-sync", "emar", "capa"}}},
	{label: "opted-out", NewSubscriber: store.NewSubscriber{Email: "optedout@care.example", Components: []string{"atlas-sync", "emar", "capa"}, ConfirmEmail: true}, optOutEmail: true},
}

func TestIncidentEmailsArriveInMailpit(t *testing.T) {
	t.Parallel()
	mp := mailpittest.Start(t)
	// RFC 8058 one-click needs an https target, so links use a public
	// https URL (this test does not follow them).
	c := start(t, map[string]string{"CRIER_SMTP_URL": mp.SMTPURL(), "CRIER_PUBLIC_URL": "https://status.crier.example"}, emailSubscribers, serve.Options{})
	updates := incidenttest.Updates()
	for _, ev := range updates {
		c.publish(t, ev)
		if m := c.waitSettled(t, ev.ID); m["email/failed"] != 0 {
			t.Fatalf("%s: %v", ev.ID, m)
		}
	}
	// Updates (1-based) reaching each mailbox by the component tree.
	want := map[string][]int{
		"group@care.example": {1, 2, 4, 5, 6, 7, 8},
		"podb@care.example":  {2, 4, 5, 6, 7, 8},
		"emar@care.example":  {3, 8},
	}
	ctx := context.Background()
	msgs, err := mp.Messages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, m := range msgs {
		if len(m.To) != 1 {
			t.Fatalf("message %s has %d recipients", m.ID, len(m.To))
		}
		got[m.To[0].Address] = append(got[m.To[0].Address], m.ID)
	}
	for addr := range got {
		if _, ok := want[addr]; !ok {
			t.Errorf("%s received %d messages, want none", addr, len(got[addr]))
		}
	}
	for addr, idx := range want {
		if len(got[addr]) != len(idx) {
			t.Errorf("%s received %d messages, want %d", addr, len(got[addr]), len(idx))
			continue
		}
		var subjects []string
		for _, id := range got[addr] {
			full, err := mp.Message(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			subjects = append(subjects, full.Subject)
			checkMessage(t, mp, full, addr)
		}
		var wantSubjects []string
		for _, i := range idx {
			ev := updates[i-1]
			wantSubjects = append(wantSubjects, "["+render.StatusLabel(ev.Status)+"] "+ev.Title)
		}
		slices.Sort(subjects)
		slices.Sort(wantSubjects)
		if !slices.Equal(subjects, wantSubjects) {
			t.Errorf("%s subjects:\n got %q\nwant %q", addr, subjects, wantSubjects)
		}
	}
}

// checkMessage checks the parts and headers of one email.
func checkMessage(t *testing.T, mp *mailpittest.Server, m mailpittest.Message, addr string) {
	t.Helper()
	ctx := context.Background()
	if m.Text == "" || m.HTML == "" {
		t.Errorf("%s %q: text %d bytes, HTML %d bytes; want both parts", addr, m.Subject, len(m.Text), len(m.HTML))
	}
	if !strings.Contains(m.HTML, "/manage/") || !strings.Contains(m.Text, "/unsubscribe/") {
		t.Errorf("%s %q: manage or unsubscribe link missing", addr, m.Subject)
	}
	// The postmortem's timeline lists every earlier update, newest first.
	if strings.HasPrefix(m.Subject, "[Postmortem]") && addr == "group@care.example" {
		iResolved := strings.Index(m.Text, "Resolved")
		iInvestigating := strings.Index(m.Text, "Investigating")
		if iResolved < 0 || iInvestigating < 0 || iResolved > iInvestigating {
			t.Errorf("postmortem timeline not newest first with every update:\n%s", m.Text)
		}
		if !strings.Contains(m.Text, "13:35 GMT") {
			t.Errorf("timeline times not shown in Europe/London:\n%s", m.Text)
		}
	}
	h, err := mp.Headers(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	first := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if id := first("Message-Id"); !strings.HasPrefix(id, "<crier.") || !strings.HasSuffix(id, "@crier.example>") {
		t.Errorf("Message-ID = %q", id)
	}
	lu := first("List-Unsubscribe")
	if err := has(lu, "<https://status.crier.example/unsubscribe/", "<mailto:status@crier.example"); err != nil {
		t.Errorf("List-Unsubscribe = %q: %v", lu, err)
	}
	if v := first("List-Unsubscribe-Post"); v != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post = %q", v)
	}
	if v := first("List-Id"); !strings.Contains(v, "crier.example") {
		t.Errorf("List-Id = %q", v)
	}
	if v := first("Auto-Submitted"); v != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", v)
	}
	if t.Failed() {
		t.Logf("headers: %v", fmt.Sprint(h))
	}
}

// TestRunbooksReachTheHomes: with guidance and recovery set on the
// components, the incident's first email says what to do now and its
// resolution what to do once it is back; the updates between say
// neither.
func TestRunbooksReachTheHomes(t *testing.T) {
	t.Parallel()
	mp := mailpittest.Start(t)
	c := start(t, map[string]string{"CRIER_SMTP_URL": mp.SMTPURL()}, emailSubscribers[:1], serve.Options{})
	ctx := context.Background()
	sync, err := c.store.GetComponent(ctx, "atlas-sync")
	if err != nil {
		t.Fatal(err)
	}
	sync.Guidance = "Switch devices to Sync Pod B: Settings, Sync, Pod B."
	sync.Recovery = "Sync every device once, then check today's MAR."
	sync.Actions = []string{"Switched to Sync Pod B"}
	if _, err := c.store.PutComponent(ctx, sync); err != nil {
		t.Fatal(err)
	}
	updates := incidenttest.Updates()
	for _, i := range []int{1, 2, 7} {
		c.publish(t, updates[i-1])
		c.waitSettled(t, updates[i-1].ID)
	}
	msgs, err := mp.Messages(ctx)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("%d messages (%v)", len(msgs), err)
	}
	bySubject := map[string]string{}
	for _, m := range msgs {
		full, err := mp.Message(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		bySubject[full.Subject] = full.Text + full.HTML
	}
	for status, want := range map[string][2]bool{"investigating": {true, false}, "update": {false, false}, "resolved": {false, true}} {
		var text string
		for subj, body := range bySubject {
			if strings.HasPrefix(subj, "["+render.StatusLabel(status)+"]") {
				text = body
			}
		}
		if text == "" {
			t.Fatalf("no %s email among %v", status, slices.Collect(maps.Keys(bySubject)))
		}
		if got := strings.Contains(text, "What to do now") && strings.Contains(text, "Switch devices to Sync Pod B"); got != want[0] {
			t.Errorf("%s email: guidance shown %t, want %t", status, got, want[0])
		}
		if got := strings.Contains(text, "Now it is back") && strings.Contains(text, "Sync every device once"); got != want[1] {
			t.Errorf("%s email: recovery shown %t, want %t", status, got, want[1])
		}
		// Only the first update of a major incident asks for acknowledgement.
		if got := strings.Contains(text, ">Acknowledge</a>") && strings.Contains(text, "/ack/"); got != want[0] {
			t.Errorf("%s email: acknowledgement asked %t, want %t", status, got, want[0])
		}
	}
}
