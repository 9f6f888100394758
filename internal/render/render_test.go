package render

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func TestHTMLEscapesEventText(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{})
	ev := seedEvent(2)
	ev.Title = `Sync <b>down</b> & "out"`
	ev.Body = "<script>alert('x')</script>\nSee <a href=\"javascript:alert(1)\">here</a>"
	ev.Components = []string{"Pod <A>"}
	ev.Timeline = append(ev.Timeline, Update{Status: "update", Body: "<img src=x onerror=alert(1)>", OccurredAt: ev.OccurredAt.Add(-time.Minute)})
	p := prepare(t, r, ev)
	e := p.Email(Recipient{
		Name:           `<i>Eve</i> "O'Neil"`,
		ManageURL:      `javascript:alert(1)`,
		UnsubscribeURL: `https://status.example.com/u/tok?a=1&b="><script>`,
	})
	for _, bad := range []string{"<script>", "<b>", "<img", "<i>", `href="javascript:`, `"><script>`, "<A>"} {
		if strings.Contains(e.HTML, bad) {
			t.Errorf("HTML contains %q unescaped", bad)
		}
	}
	for _, want := range []string{
		"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;",
		"Sync &lt;b&gt;down&lt;/b&gt; &amp; &#34;out&#34;",
		"&lt;img src=x onerror=alert(1)&gt;",
		"Hello &lt;i&gt;Eve&lt;/i&gt; &#34;O&#39;Neil&#34;,",
		`href="#ZgotmplZ"`, // the unsafe manage link is defanged
		`href="https://status.example.com/u/tok?a=1&amp;b=%22%3e%3cscript%3e"`,
		"Pod &lt;A&gt;",
	} {
		if !strings.Contains(e.HTML, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	// The plain-text part shows the text as it is.
	if !strings.Contains(e.Text, "<script>alert('x')</script>") {
		t.Errorf("text part lacks the body as written:\n%s", e.Text)
	}
}

func TestSubjectIsOneCappedLine(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{})
	cases := []struct {
		title, want string
	}{
		{"Atlas\r\nBcc: victim@example.com\r\n\r\nX-Injected: 1", "[Investigating] Atlas Bcc: victim@example.com X-Injected: 1"},
		{"  Tabs\tand\vvertical\ftabs  ", "[Investigating] Tabs and vertical tabs"},
		{"NUL\x00and\x1bESC and\u2028line\u2029sep\u0085nel", "[Investigating] NUL and ESC and line sep nel"},
		{"bad \xff utf8", "[Investigating] bad \uFFFD utf8"},
		{"\r\n", "[Investigating]"},
	}
	for _, c := range cases {
		ev := seedEvent(1)
		ev.Title = c.title
		e := prepare(t, r, ev).Email(seedRecipient)
		if e.Subject != c.want {
			t.Errorf("title %q: subject %q, want %q", c.title, e.Subject, c.want)
		}
		if strings.ContainsAny(e.Subject, "\r\n") {
			t.Errorf("title %q: subject %q has CR or LF", c.title, e.Subject)
		}
	}

	ev := seedEvent(1)
	ev.Title = strings.Repeat("Atlas Sync 🇬🇧 ", 40)
	s := prepare(t, r, ev).Subject()
	if n := utf8.RuneCountInString(s); n > DefaultSubjectMaxRunes {
		t.Errorf("subject has %d runes, want at most %d", n, DefaultSubjectMaxRunes)
	}
	if !strings.HasSuffix(s, "…") || !utf8.ValidString(s) || oddRegionalRun(strings.TrimSuffix(s, "…")) {
		t.Errorf("capped subject %q should end in … after a whole character", s)
	}

	r30 := newRenderer(t, Config{SubjectMaxRunes: 30})
	if s := prepare(t, r30, ev).Subject(); utf8.RuneCountInString(s) > 30 {
		t.Errorf("SubjectMaxRunes 30: subject %q is longer", s)
	}
}

func TestStatusLabels(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{})
	for status, want := range map[string]string{
		"investigating": "[Investigating] ",
		"identified":    "[Identified] ",
		"monitoring":    "[Monitoring] ",
		"update":        "[Update] ",
		"resolved":      "[Resolved] ",
		"postmortem":    "[Postmortem] ",
		"scheduled":     "[Scheduled maintenance] ",
		"in_progress":   "[Maintenance in progress] ",
		"verifying":     "[Verifying maintenance] ",
		"completed":     "[Maintenance completed] ",
		"on_hold":       "[On hold] ",
	} {
		ev := maintenanceEvent()
		ev.Status = status
		if s := prepare(t, r, ev).Subject(); s != want+ev.Title {
			t.Errorf("status %s: subject %q, want %q", status, s, want+ev.Title)
		}
	}
}

// order returns the positions of each of subs in s, failing if one is absent.
func positions(t *testing.T, s string, subs ...string) []int {
	t.Helper()
	var out []int
	for _, sub := range subs {
		i := strings.Index(s, sub)
		if i < 0 {
			t.Fatalf("%q not found in:\n%s", sub, s)
		}
		out = append(out, i)
	}
	return out
}

func increasing(p []int) bool {
	for i := 1; i < len(p); i++ {
		if p[i] <= p[i-1] {
			return false
		}
	}
	return true
}

func TestTimelineNewestFirstInLondonTime(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{})

	// Around both clock changes of 2025, given out of order. 01:30 is shown
	// twice on 26 October: first in BST, then in GMT.
	ev := Event{
		ID: "e5", Kind: "incident", Status: "resolved", Title: "Clock change", Body: "Five.",
		OccurredAt: at("2025-10-26T01:30:00Z"),
		Timeline: []Update{
			{ID: "e3", Status: "monitoring", Body: "Three.", OccurredAt: at("2025-06-15T12:00:00Z")},
			{ID: "e1", Status: "investigating", Body: "One.", OccurredAt: at("2025-03-29T12:00:00Z")},
			{ID: "e4", Status: "update", Body: "Four.", OccurredAt: at("2025-10-26T00:30:00Z")},
			{ID: "e2", Status: "identified", Body: "Two.", OccurredAt: at("2025-03-30T12:00:00Z")},
		},
	}
	e := prepare(t, r, ev).Email(seedRecipient)
	want := []string{
		"26 Oct 2025 01:30 GMT - Resolved (this update, above)",
		"26 Oct 2025 01:30 BST - Update",
		"15 Jun 2025 13:00 BST - Monitoring",
		"30 Mar 2025 13:00 BST - Identified",
		"29 Mar 2025 12:00 GMT - Investigating",
	}
	if p := positions(t, e.Text, want...); !increasing(p) {
		t.Errorf("text timeline not newest first:\n%s", e.Text)
	}
	if p := positions(t, e.HTML, "Five.", "Four.", "Three.", "Two.", "One."); !increasing(p[1:]) || p[0] > p[1] {
		t.Errorf("HTML timeline not newest first:\n%s", e.HTML)
	}
	if p := positions(t, e.HTML, "26 Oct 2025 01:30 BST", "15 Jun 2025 13:00 BST", "29 Mar 2025 12:00 GMT"); !increasing(p) {
		t.Errorf("HTML timeline times not newest first:\n%s", e.HTML)
	}

	// Equal times keep arrival order, newest first: on 10 November
	// "Update" at 15:38 arrived after "Monitoring" at 15:38.
	e = prepare(t, r, seedEvent(7)).Email(seedRecipient)
	positions(t, e.Text, "16:22 GMT - Resolved (this update, above)")
	if p := positions(t, e.Text, "- Resolved", "15:38 GMT - Update", "15:38 GMT - Monitoring", "14:46 GMT - Identified",
		"14:18 GMT - Update", "14:14 GMT - Update", "13:35 GMT - Investigating"); !increasing(p) {
		t.Errorf("seed timeline out of order:\n%s", e.Text)
	}

	// An update that is already in the timeline is not shown twice.
	ev = seedEvent(3)
	ev.Timeline = append(ev.Timeline, seedUpdates[2])
	e = prepare(t, r, ev).Email(seedRecipient)
	if n := strings.Count(e.Text, "14:18 GMT"); n != 2 { // the heading and the timeline
		t.Errorf("14:18 appears %d times, want 2:\n%s", n, e.Text)
	}

	// Another zone, when configured.
	ny := newRenderer(t, Config{TimeZone: "America/New_York"})
	e = prepare(t, ny, seedEvent(1)).Email(seedRecipient)
	positions(t, e.Text, "10 Nov 2025 08:35 EST")
}

func TestMaintenanceShowsWindow(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{})
	ev := maintenanceEvent()
	from, until := at("2025-07-01T21:00:00Z"), at("2025-07-02T00:30:00Z")
	ev.ScheduledFor, ev.ScheduledUntil = &from, &until
	p := prepare(t, r, ev)
	e := p.Email(seedRecipient)
	for _, part := range []string{e.Text, e.HTML} {
		positions(t, part, "1 Jul 2025 22:00 BST", "2 Jul 2025 01:30 BST")
	}
	if s := p.SMS(seedRecipient); !strings.Contains(s.Body, "From 1 Jul 2025 22:00 BST to 2 Jul 2025 01:30 BST") {
		t.Errorf("SMS lacks the window:\n%s", s.Body)
	}
}

func TestRecipientValues(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{})
	p := prepare(t, r, seedEvent(3))

	a := p.Email(seedRecipient)
	b := p.Email(Recipient{Name: "Jan Kowalski", ManageURL: "https://x.example/m/2", UnsubscribeURL: "https://x.example/u/2"})
	if a.Subject != b.Subject {
		t.Errorf("subjects differ: %q, %q", a.Subject, b.Subject)
	}
	positions(t, b.Text, "Hello Jan Kowalski,", "Manage your subscription: https://x.example/m/2", "Unsubscribe: https://x.example/u/2")
	positions(t, b.HTML, "Hello Jan Kowalski,", `href="https://x.example/m/2"`, `href="https://x.example/u/2"`)
	if strings.Contains(b.Text+b.HTML, "tok_3f9aQk") {
		t.Error("one recipient's link leaks into another's email")
	}
	positions(t, a.Text, "Hello Siân Evans,", seedRecipient.ManageURL, seedRecipient.UnsubscribeURL)

	// No name (or a blank one): a greeting without it.
	for _, name := range []string{"", " \r\n "} {
		e := p.Email(Recipient{Name: name, ManageURL: "https://x.example/m/3", UnsubscribeURL: "https://x.example/u/3"})
		positions(t, e.Text, "Hello,\n")
		positions(t, e.HTML, "Hello,</p>")
	}
	// A name cannot add lines to the text part.
	e := p.Email(Recipient{Name: "Eve\r\nUnsubscribe: https://evil.example", ManageURL: "https://x.example/m/4", UnsubscribeURL: "https://x.example/u/4"})
	positions(t, e.Text, "Hello Eve Unsubscribe: https://evil.example,\n")
}

// Event text that looks like a placeholder stays text: it is never replaced
// by a recipient's value.
func TestPlaceholdersCannotBeForged(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{})
	var fakes []string
	for i := range len(slotChars) {
		fakes = append(fakes, placeholder("crier"+strings.Repeat("A", 26), i))
	}
	fake := strings.Join(fakes, " ")
	ev := seedEvent(3)
	ev.Title, ev.Body = fake, fake+"\n"+fake
	ev.Components = []string{fake}
	ev.Timeline[0].Body = fake
	p := prepare(t, r, ev)
	rc := Recipient{Name: "NAME", ManageURL: "https://x.example/MANAGE", UnsubscribeURL: "https://x.example/UNSUB"}
	e := p.Email(rc)
	for _, part := range []struct{ name, s string }{{"text", e.Text}, {"html", e.HTML}} {
		for v, want := range map[string]int{"NAME": 1, "MANAGE": 1, "UNSUB": 1} {
			if n := strings.Count(part.s, v); n != want {
				t.Errorf("%s part: %s appears %d times, want %d", part.name, v, n, want)
			}
		}
	}
	if n := strings.Count(e.Text, fake); n < 4 {
		t.Errorf("the event's text was altered:\n%s", e.Text)
	}
	s := p.SMS(rc)
	if strings.Count(s.Body, "MANAGE") != 1 || !strings.Contains(s.Body, "crierAAAA") {
		t.Errorf("SMS: %s", s.Body)
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestOverrideDirectory(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"email.subject.tmpl": "{{.StatusLabel}} | {{.Title}} | custom\n",
		"sms.txt.tmpl":       "CUSTOM {{.Title}}: {{.Body}} {{.Link}} STOP=stop",
		"README.md":          "not a template",
	})
	r := newRenderer(t, Config{Dir: dir})
	p := prepare(t, r, seedEvent(1))
	e := p.Email(seedRecipient)
	if want := "Investigating | Atlas Device Synchronisation Issues | custom"; e.Subject != want {
		t.Errorf("subject %q, want %q", e.Subject, want)
	}
	// The files not in the directory are the embedded ones.
	positions(t, e.Text, "Timeline (newest first)")
	positions(t, e.HTML, "<!DOCTYPE html>")
	if s := p.SMS(seedRecipient); !strings.HasPrefix(s.Body, "CUSTOM Atlas Device Synchronisation Issues: We are aware") ||
		!strings.HasSuffix(s.Body, seedRecipient.ManageURL+" STOP=stop") {
		t.Errorf("SMS from the override: %q", s.Body)
	}
}

func TestBadTemplatesFailNew(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		files map[string]string
		file  string // in the TemplateError; "" when not a TemplateError
		want  string // in the error text
	}{
		{"syntax", map[string]string{"email.html.tmpl": "<p>{{.Title</p>"}, "email.html.tmpl", "email.html.tmpl:1"},
		{"unknown field", map[string]string{"email.txt.tmpl": "{{.Titel}}"}, "email.txt.tmpl", "Titel"},
		{"unknown function", map[string]string{"sms.txt.tmpl": "{{shout .Title}}"}, "sms.txt.tmpl", `"shout" not defined`},
		{"no unsubscribe link", map[string]string{"email.html.tmpl": `<a href="{{.Recipient.ManageURL}}">Manage</a>`}, "email.html.tmpl", ".Recipient.UnsubscribeURL"},
		{"no manage link", map[string]string{"email.txt.tmpl": `{{.Recipient.UnsubscribeURL}}`}, "email.txt.tmpl", ".Recipient.ManageURL"},
		{"no SMS link", map[string]string{"sms.txt.tmpl": `{{.Title}} {{.Body}}`}, "sms.txt.tmpl", ".Link"},
		{"link in script", map[string]string{"email.html.tmpl": `<a href="{{.Recipient.ManageURL}}">m</a><script>var u = "{{.Recipient.UnsubscribeURL}}";</script>`}, "email.html.tmpl", "cannot be escaped safely"},
		{"name in query", map[string]string{"email.html.tmpl": `<a href="{{.Recipient.ManageURL}}?n={{.Recipient.Name}}">m</a><a href="{{.Recipient.UnsubscribeURL}}">u</a>`}, "email.html.tmpl", ".Recipient.Name is used where"},
		{"link changed", map[string]string{"email.txt.tmpl": `{{.Recipient.ManageURL | printf "%q"}} {{.Recipient.UnsubscribeURL}}`}, "email.txt.tmpl", "print it as it is"},
		{"misspelt file", map[string]string{"email.htm.tmpl": "x"}, "", "unknown template email.htm.tmpl"},
		{"empty dir", map[string]string{"notes.txt": "x"}, "", "has none of"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := writeFiles(t, c.files)
			_, err := New(Config{Dir: dir})
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			var te *TemplateError
			if c.file == "" {
				return
			}
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *TemplateError", err)
			}
			if te.Name != c.file || te.Source != filepath.Join(dir, c.file) {
				t.Errorf("TemplateError names %s at %s, want %s in %s", te.Name, te.Source, c.file, dir)
			}
			if !strings.Contains(err.Error(), te.Source) {
				t.Errorf("error %q does not name the file's path", err)
			}
		})
	}

	if _, err := New(Config{Dir: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("New with a missing directory succeeded")
	}
	if _, err := New(Config{TimeZone: "Europe/Atlantis"}); err == nil || !strings.Contains(err.Error(), "Europe/Atlantis") {
		t.Errorf("New with a bad time zone: %v", err)
	}
	if _, err := New(Config{SMSMaxSegments: 11}); err == nil {
		t.Error("New with 11 SMS segments succeeded")
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{})
	p := prepare(t, r, seedEvent(8))
	want := p.Email(seedRecipient)
	wantSMS := p.SMS(seedRecipient)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				rc := seedRecipient
				if (g+i)%3 == 0 {
					rc.ManageURL += "~x" // another length, not uniform: no cache
				}
				if e := p.Email(seedRecipient); e != want {
					t.Error("Email differs between calls")
					return
				}
				s := p.SMS(rc)
				if rc == seedRecipient && s != wantSMS {
					t.Errorf("SMS differs between calls: %q", s.Body)
					return
				}
				if !strings.Contains(s.Body, rc.ManageURL) || s.Segments > 2 {
					t.Errorf("SMS %q", s.Body)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestMultiLine(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                  "",
		"  one\r\ntwo\rthree\n":             "one\ntwo\nthree",
		"a  \n\n\n\n  b\x00c\t d \u2028e":   "a\n\n  bc\t d\ne",
		"\n\n para \n\n":                    "para",
		"bad\xffbyte":                       "bad\uFFFDbyte",
		"keep   inner   spaces":             "keep   inner   spaces",
		" • Scheduling Error: x \n • Next ": "• Scheduling Error: x\n • Next",
	} {
		if got := multiLine(in); got != want {
			t.Errorf("multiLine(%q) = %q, want %q", in, got, want)
		}
	}
}
