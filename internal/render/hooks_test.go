package render

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/testkit/hooktest"
	"github.com/crier-dev/crier/internal/testkit/npmtest"
)

// TestHooksOfTheSeedIncident: every update of the seed incident renders a
// webhook body holding the event and its timeline, a Teams message that
// is a valid Adaptive Card and a Slack message within Block Kit's rules.
func TestHooksOfTheSeedIncident(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	rc := Recipient{ManageURL: "https://status.example.org/manage/tok&x=<1>", UnsubscribeURL: "https://status.example.org/unsubscribe/tok"}
	for n := 1; n <= len(seedUpdates); n++ {
		ev := withRunbooks(seedEvent(n))
		p, err := r.Prepare(ev)
		if err != nil {
			t.Fatal(err)
		}
		body, err := p.Webhook(rc)
		if err != nil {
			t.Fatal(err)
		}
		var w struct {
			Type  string
			Event struct {
				ID, IncidentID, Status, Body string
				Components                   []string
			}
			Timeline []struct {
				Status, Body string
				Current      bool
			}
			ManageURL string `json:"manage_url"`
		}
		if err := json.Unmarshal(body, &w); err != nil {
			t.Fatalf("update %d: webhook body: %v\n%s", n, err, body)
		}
		if w.Type != "incident.updated" || w.Event.ID != ev.ID || w.Event.Status != seedUpdates[n-1].Status ||
			w.Event.Body != multiLine(seedUpdates[n-1].Body) || len(w.Timeline) != n || !w.Timeline[0].Current || w.ManageURL != rc.ManageURL {
			t.Errorf("update %d: webhook body %s", n, body)
		}
		teams, err := p.Teams(rc)
		if err != nil {
			t.Fatal(err)
		}
		if err := hooktest.CheckTeamsMessage(teams); err != nil {
			t.Errorf("update %d: Teams message: %v\n%s", n, err, teams)
		}
		slack, err := p.Slack(rc)
		if err != nil {
			t.Fatal(err)
		}
		if err := hooktest.CheckSlackMessage(slack); err != nil {
			t.Errorf("update %d: Slack message: %v\n%s", n, err, slack)
		}
		if !strings.Contains(string(slack), `<https://status.example.org/manage/tok&x=<1>|Manage notifications>`) {
			t.Errorf("update %d: Slack message lacks the manage link: %s", n, slack)
		}
	}
	// The post-mortem's body is long: Slack's section stays within 3000.
	p, _ := r.Prepare(Event{ID: "long", IncidentID: "long", Status: "update", Impact: "major", Title: "Long",
		Body: strings.Repeat("Sync Pod A <is> down & out. ", 200), Components: []string{"Sync Pod A"}})
	slack, err := p.Slack(rc)
	if err != nil {
		t.Fatal(err)
	}
	if err := hooktest.CheckSlackMessage(slack); err != nil {
		t.Errorf("a long body: %v", err)
	}
	if !strings.Contains(string(slack), "&lt;is&gt; down &amp; out") {
		t.Error("Slack text is not escaped for mrkdwn")
	}
}

// TestTeamsCardParsesWithAdaptiveCards: the seed incident's cards parse
// with Microsoft's own Adaptive Cards library (npm adaptivecards) without
// a single complaint: no unknown element, property value or version.
func TestTeamsCardParsesWithAdaptiveCards(t *testing.T) {
	modules := npmtest.Dir(t, "adaptivecards", "2.11.3")
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var cards []json.RawMessage
	for n := 1; n <= len(seedUpdates); n++ {
		p, err := r.Prepare(withRunbooks(seedEvent(n)))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := p.Teams(Recipient{ManageURL: "https://status.example.org/manage/tok"})
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Attachments []struct{ Content json.RawMessage }
		}
		if err := json.Unmarshal(msg, &m); err != nil || len(m.Attachments) != 1 {
			t.Fatalf("Teams message %s (%v)", msg, err)
		}
		cards = append(cards, m.Attachments[0].Content)
	}
	bogus := json.RawMessage(`{"type":"AdaptiveCard","version":"1.4","body":[{"type":"TextBlock","text":"x","weight":"Boldest"}]}`)
	in, _ := json.Marshal(append(cards, bogus))
	out := npmtest.Node(t, modules, `
const AC = require("adaptivecards");
const cards = JSON.parse(require("fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(cards.map(json => {
  const ctx = new AC.SerializationContext();
  new AC.AdaptiveCard().parse(json, ctx);
  const events = [];
  for (let i = 0; i < ctx.eventCount; i++) events.push(ctx.getEventAt(i).message);
  return events;
})));
`, string(in))
	var complaints [][]string
	if err := json.Unmarshal([]byte(out), &complaints); err != nil || len(complaints) != len(cards)+1 {
		t.Fatalf("node printed %q (%v)", out, err)
	}
	for i, c := range complaints[:len(cards)] {
		if len(c) != 0 {
			t.Errorf("update %d: adaptivecards complains: %q", i+1, c)
		}
	}
	if len(complaints[len(cards)]) == 0 {
		t.Error("adaptivecards took a card with weight Boldest: the check cannot fail")
	}
}

// withRunbooks gives the seed's first update the components' guidance
// and its resolution their recovery, as compose does.
func withRunbooks(ev Event) Event {
	switch ev.Status {
	case "investigating":
		ev.Guidance = []Runbook{
			{Component: "Sync Pod A", Text: "Switch devices to Sync Pod B: Settings, Sync, Pod B."},
			{Component: "CAPA", Text: "Take orders by phone & fax <until it is back>."},
		}
	case "resolved":
		ev.Recovery = []Runbook{{Component: "Sync Pod A", Text: "Switch back to Sync Pod A and sync every device once."}}
	}
	return ev
}

// TestRunbooksInEveryMessage: guidance is in the first update's email,
// text, webhook, card and blocks, recovery in the resolution's; the text
// stays within its segments.
func TestRunbooksInEveryMessage(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	rc := Recipient{ManageURL: "https://status.example.org/manage/tok", UnsubscribeURL: "https://status.example.org/unsubscribe/tok"}
	for n, want := range map[int][]string{1: {"Switch devices to Sync Pod B", "What to do"}, 7: {"Switch back to Sync Pod A", "Now it is back"}} {
		p, err := r.Prepare(withRunbooks(seedEvent(n)))
		if err != nil {
			t.Fatal(err)
		}
		e := p.Email(rc)
		sms := p.SMS(rc)
		hook, _ := p.Webhook(rc)
		teams, _ := p.Teams(rc)
		slack, _ := p.Slack(rc)
		for name, text := range map[string]string{"text": e.Text, "html": e.HTML, "sms": sms.Body, "webhook": string(hook), "teams": string(teams), "slack": string(slack)} {
			for i, w := range want {
				if name == "webhook" && i > 0 {
					continue // structured: no heading
				}
				if !strings.Contains(text, w) {
					t.Errorf("update %d: the %s lacks %q:\n%s", n, name, w, text)
				}
			}
		}
		if sms.Segments > DefaultSMSMaxSegments {
			t.Errorf("update %d: the text takes %d segments", n, sms.Segments)
		}
		if err := hooktest.CheckTeamsMessage(teams); err != nil {
			t.Errorf("update %d: %v", n, err)
		}
	}
	// Guidance too long for the text is cut, and the link stays.
	ev := withRunbooks(seedEvent(1))
	ev.Guidance[0].Text = strings.Repeat("Use the paper MAR charts in the red folder. ", 20)
	p, _ := r.Prepare(ev)
	sms := p.SMS(rc)
	if !sms.Truncated || sms.Segments > DefaultSMSMaxSegments || !strings.Contains(sms.Body, rc.ManageURL) || !strings.Contains(sms.Body, "What to do: Sync Pod A: Use the paper") {
		t.Errorf("long guidance: %+v", sms)
	}
}

// TestBrokenHookTemplateStopsStartUp: a JSON template whose output is not
// JSON fails New, naming the file.
func TestBrokenHookTemplateStopsStartUp(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "slack.json.tmpl"), []byte(`{"text": {{.Title}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Dir: dir})
	var te *TemplateError
	if !errors.As(err, &te) || te.Name != "slack.json.tmpl" || !errors.Is(err, errNotJSON) {
		t.Fatalf("New with a Slack template printing raw text: %v", err)
	}
}

// TestOneWaySenderLinksTheAcknowledgement: from an alphanumeric sender a
// text that asks for acknowledgement links to the acknowledgement page
// and does not ask for a reply; from a number it asks for "OK".
func TestOneWaySenderLinksTheAcknowledgement(t *testing.T) {
	rc := Recipient{ManageURL: "https://status.example.org/manage/tok", AckURL: "https://status.example.org/ack/acktok"}
	ev := seedEvent(1)
	ev.AskAck = true
	ev.StatusURL = "https://status.example.org/incidents/x"
	for _, oneWay := range []bool{false, true} {
		r, err := New(Config{OneWaySMS: oneWay})
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.Prepare(ev)
		if err != nil {
			t.Fatal(err)
		}
		body := p.SMS(rc).Body
		if got := strings.Contains(body, "Confirm you have seen this: "+rc.AckURL); got != oneWay {
			t.Errorf("one-way %t: ack link shown %t:\n%s", oneWay, got, body)
		}
		if got := strings.Contains(body, "Reply OK"); got == oneWay {
			t.Errorf("one-way %t: asks for OK %t:\n%s", oneWay, got, body)
		}
		if p.SMS(rc).Segments > DefaultSMSMaxSegments {
			t.Errorf("one-way %t: %d segments", oneWay, p.SMS(rc).Segments)
		}
	}
}

// TestDrillIsMarked: a drill's email, text and card start with the test
// notice and ask for acknowledgement.
func TestDrillIsMarked(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Prepare(Event{ID: "drill-1", IncidentID: "drill-1", Kind: "drill", Status: "test", Impact: "none",
		Title: "Alerting drill", Body: "eMar is fine.", Components: []string{"eMar"}, AskAck: true})
	if err != nil {
		t.Fatal(err)
	}
	rc := Recipient{ManageURL: "https://s.example/manage/t", UnsubscribeURL: "https://s.example/unsubscribe/t", AckURL: "https://s.example/ack/a"}
	e, sms := p.Email(rc), p.SMS(rc)
	teams, _ := p.Teams(rc)
	if p.Subject() != "[Test] Alerting drill" {
		t.Errorf("subject %q", p.Subject())
	}
	for name, text := range map[string]string{"text": e.Text, "html": e.HTML, "sms": sms.Body, "teams": string(teams)} {
		if !strings.Contains(text, DrillNotice) {
			t.Errorf("the drill's %s lacks the notice:\n%s", name, text)
		}
	}
	if !strings.Contains(e.HTML, "https://s.example/ack/a") || !strings.Contains(sms.Body, "Reply OK") {
		t.Error("the drill does not ask for acknowledgement")
	}
}
