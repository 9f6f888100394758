// Package render turns an incident or maintenance event into the email
// (subject, plain text, HTML) and the text message each subscriber receives.
//
// Rendering is split in two so that a large fan-out stays cheap:
//
//   - Renderer.Prepare executes the templates once per event: subject, body,
//     affected components and the incident's timeline (newest first, in the
//     configured time zone).
//   - Prepared.Email and Prepared.SMS personalise the result per recipient
//     (name, manage and unsubscribe links). They only copy pre-rendered text
//     and the escaped recipient values into one new string per part; they
//     do not execute templates and are safe for concurrent use.
//
// Templates are the files of package templates (embedded in the binary), or,
// file by file, those of Config.Dir. They are parsed and test-rendered by
// New, which fails with a *TemplateError naming the file on any problem. The
// subject, text and HTML templates get an EmailData, the SMS template an
// SMSData, the webhook, Teams and Slack templates (JSON) a HookData.
// Besides the text/template built-ins they can call:
//
//	datetime TIME           "10 Nov 2025 13:35 GMT" in the configured zone
//	join LIST SEP           strings.Join
//	indent N TEXT           TEXT with N spaces before every line
//	paragraphs TEXT         TEXT split into paragraphs, each a list of lines
//
// and the JSON templates also:
//
//	json VALUE              VALUE as JSON (a quoted, escaped string for text)
//	truncate N TEXT         TEXT cut to N characters, ending with "…" if cut
//	mrkdwn TEXT             TEXT with &, < and > escaped for Slack
//
// Per-recipient values (EmailData.Recipient, SMSData.Body and SMSData.Link)
// are placeholders when the templates run: print them unchanged, test them
// with if or with, but do not transform them. In the HTML template they may
// appear in text, in quoted attribute values and at the start of a quoted
// URL attribute such as href; New rejects any other use, and also a template
// that leaves out the manage or unsubscribe link, or an SMS template that
// leaves out the link.
//
// A text message is kept within Config.SMSMaxSegments by shortening only
// its body; see Segments for how segments are counted.
package render

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/crier-dev/crier/templates"
)

// Template file names, in package templates and in Config.Dir.
const (
	fileSubject   = "email.subject.tmpl"
	fileEmailText = "email.txt.tmpl"
	fileEmailHTML = "email.html.tmpl"
	fileSMS       = "sms.txt.tmpl"
)

var templateFiles = []string{fileSubject, fileEmailText, fileEmailHTML, fileSMS, fileWebhook, fileTeams, fileSlack}

// Config configures a Renderer. The zero value is usable: see WithDefaults.
type Config struct {
	// OneWaySMS says texts come from a sender that cannot take replies (an
	// alphanumeric sender ID): a text asking for acknowledgement then
	// links to the acknowledgement page instead of asking for "OK".
	OneWaySMS bool
	// Dir, if set, is a directory of template files. Each of
	// email.subject.tmpl, email.txt.tmpl, email.html.tmpl and sms.txt.tmpl
	// found there replaces the embedded file of the same name; the others
	// stay embedded. Another *.tmpl file in Dir (a misspelt name) is an error,
	// and so is a Dir with none of them.
	Dir string
	// TimeZone is the IANA time zone times are shown in. Default
	// "Europe/London" (GMT in winter, BST in summer). The program must have
	// the time zone database: the system's, or time/tzdata imported by main.
	TimeZone string
	// SMSMaxSegments is the most segments a text message may take; the body
	// is shortened to fit. Default 2, at most 10.
	SMSMaxSegments int
	// SubjectMaxRunes caps the subject line, in characters. Default 200.
	SubjectMaxRunes int
}

// Defaults applied by Config.WithDefaults.
const (
	DefaultTimeZone        = "Europe/London"
	DefaultSMSMaxSegments  = 2
	DefaultSubjectMaxRunes = 200
	maxSMSSegments         = 10
)

// WithDefaults returns c with every unset field set to its default.
func (c Config) WithDefaults() Config {
	if c.TimeZone == "" {
		c.TimeZone = DefaultTimeZone
	}
	if c.SMSMaxSegments == 0 {
		c.SMSMaxSegments = DefaultSMSMaxSegments
	}
	if c.SubjectMaxRunes == 0 {
		c.SubjectMaxRunes = DefaultSubjectMaxRunes
	}
	return c
}

func (c Config) validate() error {
	if c.SMSMaxSegments < 1 || c.SMSMaxSegments > maxSMSSegments {
		return fmt.Errorf("render: SMSMaxSegments is %d, want 1 to %d", c.SMSMaxSegments, maxSMSSegments)
	}
	if c.SubjectMaxRunes < 20 {
		return fmt.Errorf("render: SubjectMaxRunes is %d, want at least 20", c.SubjectMaxRunes)
	}
	return nil
}

// TemplateError reports a template that cannot be read, parsed or executed,
// or that breaks the rules in the package documentation.
type TemplateError struct {
	// Name is the template file name, such as "email.html.tmpl".
	Name string
	// Source is the file's path in Config.Dir, or "embedded".
	Source string
	Err    error
}

func (e *TemplateError) Error() string {
	return fmt.Sprintf("render: template %s (%s): %v", e.Name, e.Source, e.Err)
}

func (e *TemplateError) Unwrap() error { return e.Err }

// Renderer holds the parsed templates. It is safe for concurrent use.
type Renderer struct {
	oneWay     bool
	loc        *time.Location
	smsMax     int
	subjectMax int
	sources    map[string]string // file name -> path or "embedded"

	subject *template.Template
	text    *template.Template
	html    *htmltemplate.Template
	sms     *template.Template
	// webhook, teams and slack render JSON (hooks.go).
	webhook, teams, slack *template.Template
}

// New parses the templates and renders two sample events (an incident and a
// maintenance) with them, so that a bad template stops start-up with an
// error naming the file rather than failing deliveries later.
func New(cfg Config) (*Renderer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(cfg.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("render: time zone %q: %w", cfg.TimeZone, err)
	}
	r := &Renderer{
		oneWay:     cfg.OneWaySMS,
		loc:        loc,
		smsMax:     cfg.SMSMaxSegments,
		subjectMax: cfg.SubjectMaxRunes,
		sources:    make(map[string]string, len(templateFiles)),
	}
	src, err := r.readTemplates(cfg.Dir)
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"datetime":   r.datetime,
		"join":       strings.Join,
		"indent":     indent,
		"paragraphs": paragraphs,
	}
	parseText := func(name string) (*template.Template, error) {
		t, err := template.New(name).Funcs(funcs).Parse(src[name])
		if err != nil {
			return nil, r.templateError(name, err)
		}
		return t, nil
	}
	if r.subject, err = parseText(fileSubject); err != nil {
		return nil, err
	}
	if r.text, err = parseText(fileEmailText); err != nil {
		return nil, err
	}
	if r.sms, err = parseText(fileSMS); err != nil {
		return nil, err
	}
	parseJSON := func(name string) (*template.Template, error) {
		t, err := template.New(name).Funcs(funcs).Funcs(hookFuncs).Parse(src[name])
		if err != nil {
			return nil, r.templateError(name, err)
		}
		return t, nil
	}
	if r.webhook, err = parseJSON(fileWebhook); err != nil {
		return nil, err
	}
	if r.teams, err = parseJSON(fileTeams); err != nil {
		return nil, err
	}
	if r.slack, err = parseJSON(fileSlack); err != nil {
		return nil, err
	}
	r.html, err = htmltemplate.New(fileEmailHTML).Funcs(htmltemplate.FuncMap(funcs)).Parse(src[fileEmailHTML])
	if err != nil {
		return nil, r.templateError(fileEmailHTML, err)
	}
	for _, ev := range sampleEvents() {
		if _, err := r.Prepare(ev); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// readTemplates returns the source of every template file, from dir when
// it has the file and from the embedded templates otherwise.
func (r *Renderer) readTemplates(dir string) (map[string]string, error) {
	src := make(map[string]string, len(templateFiles))
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("render: template directory: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if filepath.Ext(name) != ".tmpl" {
				continue
			}
			if !slices.Contains(templateFiles, name) {
				return nil, fmt.Errorf("render: template directory %s: unknown template %s (want %s)",
					dir, name, strings.Join(templateFiles, ", "))
			}
			p := filepath.Join(dir, name)
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, &TemplateError{Name: name, Source: p, Err: err}
			}
			src[name], r.sources[name] = string(b), p
		}
		if len(src) == 0 {
			return nil, fmt.Errorf("render: template directory %s has none of %s",
				dir, strings.Join(templateFiles, ", "))
		}
	}
	for _, name := range templateFiles {
		if _, ok := src[name]; ok {
			continue
		}
		b, err := fs.ReadFile(templates.FS, name)
		if err != nil {
			return nil, &TemplateError{Name: name, Source: "embedded", Err: err}
		}
		src[name], r.sources[name] = string(b), "embedded"
	}
	return src, nil
}

func (r *Renderer) templateError(name string, err error) error {
	return &TemplateError{Name: name, Source: r.sources[name], Err: err}
}

// datetime formats t in the configured zone, e.g. "10 Nov 2025 13:35 GMT".
func (r *Renderer) datetime(t time.Time) string {
	return t.In(r.loc).Format(DateTimeLayout)
}

// DateTimeLayout is how messages and pages show a time: "10 Nov 2025
// 13:35 GMT", in CRIER_TIMEZONE.
const DateTimeLayout = "2 Jan 2006 15:04 MST"

// indent puts n spaces before every non-empty line of s.
func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

// Event is one update of an incident or maintenance, as the templates need
// it. Text fields are normalised by Prepare (invalid UTF-8, control
// characters, line endings); HTML in them is shown as text.
type Event struct {
	// ID identifies the update; a Timeline entry with the same ID is taken
	// to be this update.
	ID         string
	IncidentID string
	// Kind is "incident" or "maintenance".
	Kind string
	// Status is the update's status, e.g. "investigating" (see StatusLabel).
	Status string
	// Impact is "none", "minor", "major" or "critical".
	Impact     string
	Title      string
	Body       string
	Components []string // display names of the affected components
	OccurredAt time.Time
	// ScheduledFor and ScheduledUntil bound a maintenance window.
	ScheduledFor, ScheduledUntil *time.Time
	// StatusURL, if set, is a public page about the incident. The email
	// links to it and the text message uses it instead of the recipient's
	// manage link.
	StatusURL string
	// Guidance is what to do now, for the affected components that have
	// some (compose gives it to an incident's first update); Recovery what
	// to do once it is back (the resolution).
	Guidance, Recovery []Runbook
	// AskAck makes the messages ask each home to acknowledge the update:
	// an Acknowledge button (Recipient.AckURL) in the email, "Reply OK" in
	// the text.
	AskAck bool
	// Timeline holds the incident's other updates so far, in any order (the
	// order given is taken as the arrival order, which breaks ties of
	// OccurredAt). This update is added to it if it is not there.
	Timeline []Update
}

// AdviceSection is guidance or recovery under its heading ("What to do
// now", "Now it is back").
type AdviceSection struct {
	Heading  string
	Runbooks []Runbook
}

// DrillNotice starts the text of every drill.
const DrillNotice = "TEST: no action needed other than to confirm."

// Runbook is one component's advice.
type Runbook struct {
	Component string // display name
	Text      string // lines separated by "\n"
}

// Update is one entry of an incident's timeline.
type Update struct {
	ID, Status, Title, Body string
	OccurredAt              time.Time
}

// Recipient holds what differs between the recipients of one event.
type Recipient struct {
	// Name is the subscriber's name; it may be empty.
	Name string
	// ManageURL is the recipient's subscription page.
	ManageURL string
	// UnsubscribeURL is the recipient's one-click unsubscribe link.
	UnsubscribeURL string
	// AckURL is the recipient's acknowledgement page, when the event asks
	// for acknowledgement (Event.AskAck).
	AckURL string
}

// EmailData is what the email templates (subject, text and HTML) are
// executed with.
type EmailData struct {
	Kind        string // "incident" or "maintenance"
	Maintenance bool   // Kind == "maintenance"
	Status      string
	StatusLabel string // see StatusLabel
	Impact      string
	ImpactLabel string // "Minor", "Major", "Critical"; empty for none
	Title       string // one line
	Body        string // lines separated by "\n", paragraphs by "\n\n"
	Components  []string
	OccurredAt  time.Time
	// ScheduledFor and ScheduledUntil are nil when not given.
	ScheduledFor, ScheduledUntil *time.Time
	StatusURL                    string
	// Guidance (what to do now) and Recovery (what to do once it is
	// back) are the affected components' runbooks; usually empty. Advice
	// is both as headed sections, those with runbooks only.
	Guidance, Recovery []Runbook
	Advice             []AdviceSection
	// AskAck: the email shows an Acknowledge button to Recipient.AckURL,
	// the text asks for a reply.
	AskAck bool
	// Subject is the finished subject line (empty in the subject template).
	Subject string
	// Timeline is every update of the incident so far, newest first,
	// including this one.
	Timeline []TimelineEntry
	// Recipient is filled in per recipient: see the package documentation.
	// It is empty in the subject template.
	Recipient Recipient
}

// TimelineEntry is one update in EmailData.Timeline.
type TimelineEntry struct {
	Status      string
	StatusLabel string
	Title       string
	Body        string
	OccurredAt  time.Time
	// Current marks the update the message is about.
	Current bool
}

// SMSData is what the SMS template is executed with.
type SMSData struct {
	Kind                         string
	Maintenance                  bool
	Status                       string
	StatusLabel                  string
	Impact                       string
	ImpactLabel                  string
	Title                        string // one line
	Components                   []string
	OccurredAt                   time.Time
	ScheduledFor, ScheduledUntil *time.Time
	// Body is the update's text on one line, shortened per message to fit
	// the segment limit. Print it unchanged.
	Body string
	// AskAck: ask for a reply ("Reply OK") confirming the text was seen;
	// with OneWay (a sender that takes no replies) .Link is the
	// acknowledgement page instead.
	AskAck, OneWay bool
	// Link is Event.StatusURL if set, else the recipient's manage link.
	// Print it unchanged.
	Link string
}

var statusLabels = map[string]string{
	"investigating": "Investigating",
	"identified":    "Identified",
	"monitoring":    "Monitoring",
	"update":        "Update",
	"resolved":      "Resolved",
	"postmortem":    "Postmortem",
	"scheduled":     "Scheduled maintenance",
	"in_progress":   "Maintenance in progress",
	"verifying":     "Verifying maintenance",
	"completed":     "Maintenance completed",
}

// StatusLabel returns the label shown for a status, such as "Investigating"
// for "investigating" or "Scheduled maintenance" for "scheduled". An
// unknown status is shown capitalised with underscores as spaces.
func StatusLabel(status string) string {
	if l, ok := statusLabels[status]; ok {
		return l
	}
	s := oneLine(strings.ReplaceAll(status, "_", " "))
	if s == "" {
		return "Update"
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func impactLabel(impact string) string {
	switch impact {
	case "", "none":
		return ""
	}
	s := oneLine(impact)
	if s == "" {
		return ""
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Prepared is an event rendered for all its recipients. It is safe for
// concurrent use.
type Prepared struct {
	subject string
	// text and html are indexed by whether the recipient has a name.
	text, html [2]part
	sms        *smsPlan
	static     *SMS // the text message, when it is the same for everyone
	hooks      *hooks
	askAck     bool
	ackLink    bool // the text's link is the acknowledgement page
}

// AsksAck reports whether the messages ask for acknowledgement
// (Event.AskAck): only then is Recipient.AckURL used.
func (p *Prepared) AsksAck() bool { return p.askAck }

// Prepare renders ev once: the subject, both email parts and the text
// message, with placeholders for the per-recipient values. Prepare never
// fails with the default templates; with others it can fail like New.
func (r *Renderer) Prepare(ev Event) (*Prepared, error) {
	if ev.Kind == "drill" {
		// A drill says so before anything else, on every channel.
		ev.Body = strings.TrimSpace(DrillNotice + "\n\n" + ev.Body)
	}
	d := r.emailData(ev)
	var buf bytes.Buffer

	// The subject sees no recipient.
	if err := r.subject.Execute(&buf, d); err != nil {
		return nil, r.templateError(fileSubject, err)
	}
	d.Subject = capRunes(oneLine(buf.String()), r.subjectMax)
	p := &Prepared{subject: d.Subject, askAck: d.AskAck}

	var err error
	nonce := newNonce(ev)
	named := Recipient{
		Name:           placeholder(nonce, slotName),
		ManageURL:      placeholder(nonce, slotManage),
		UnsubscribeURL: placeholder(nonce, slotUnsubscribe),
	}
	// The acknowledgement link is not required: a template written before
	// it existed still works, without the button.
	required := []int{slotManage, slotUnsubscribe}
	if d.AskAck {
		named.AckURL = placeholder(nonce, slotAck)
	}
	for i, rc := range [2]Recipient{{ManageURL: named.ManageURL, UnsubscribeURL: named.UnsubscribeURL, AckURL: named.AckURL}, named} {
		d.Recipient = rc
		buf.Reset()
		if err := r.text.Execute(&buf, d); err != nil {
			return nil, r.templateError(fileEmailText, err)
		}
		if p.text[i], err = splitPart(buf.String(), nonce, false); err == nil {
			err = p.text[i].require(required...)
		}
		if err != nil {
			return nil, r.templateError(fileEmailText, err)
		}
		buf.Reset()
		if err := r.html.Execute(&buf, d); err != nil {
			return nil, r.templateError(fileEmailHTML, err)
		}
		if p.html[i], err = splitPart(buf.String(), nonce, true); err == nil {
			err = p.html[i].require(required...)
		}
		if err != nil {
			return nil, r.templateError(fileEmailHTML, err)
		}
	}

	sd := SMSData{
		Kind: d.Kind, Maintenance: d.Maintenance, Status: d.Status, StatusLabel: d.StatusLabel,
		Impact: d.Impact, ImpactLabel: d.ImpactLabel, Title: d.Title, Components: d.Components,
		OccurredAt: d.OccurredAt, ScheduledFor: d.ScheduledFor, ScheduledUntil: d.ScheduledUntil,
		AskAck: d.AskAck, OneWay: r.oneWay, Link: placeholder(nonce, slotLink),
	}
	// A text carries the guidance (or recovery) first, then the body, on
	// one line: what to do matters most when little fits. The whole is
	// shortened cleanly, and the link leads to the rest.
	body := oneLine(strings.TrimSpace(smsAdvice(d) + " " + ev.Body))
	if body != "" {
		sd.Body = placeholder(nonce, slotBody)
	}
	buf.Reset()
	if err := r.sms.Execute(&buf, sd); err != nil {
		return nil, r.templateError(fileSMS, err)
	}
	sms, err := splitPart(strings.TrimSpace(buf.String()), nonce, false)
	if err == nil {
		err = sms.require(slotLink)
	}
	if err != nil {
		return nil, r.templateError(fileSMS, err)
	}
	p.sms = newSMSPlan(sms, body, r.smsMax)
	if p.hooks, err = r.prepareHooks(ev, r.emailData(ev)); err != nil {
		return nil, err
	}
	p.ackLink = d.AskAck && r.oneWay
	if d.StatusURL != "" && !p.ackLink {
		s := p.sms.render(d.StatusURL)
		p.static = &s
	}
	return p, nil
}

// emailData turns ev into template data: normalised text, labels and the
// timeline sorted newest first.
func (r *Renderer) emailData(ev Event) EmailData {
	d := EmailData{
		Kind:           oneLine(ev.Kind),
		Status:         oneLine(ev.Status),
		Impact:         oneLine(ev.Impact),
		Title:          oneLine(ev.Title),
		Body:           multiLine(ev.Body),
		OccurredAt:     ev.OccurredAt,
		ScheduledFor:   ev.ScheduledFor,
		ScheduledUntil: ev.ScheduledUntil,
		StatusURL:      oneLine(ev.StatusURL),
		Guidance:       runbooks(ev.Guidance),
		Recovery:       runbooks(ev.Recovery),
		AskAck:         ev.AskAck,
	}
	if d.Kind == "" {
		d.Kind = "incident"
	}
	if len(d.Guidance) > 0 {
		d.Advice = append(d.Advice, AdviceSection{"What to do now", d.Guidance})
	}
	if len(d.Recovery) > 0 {
		d.Advice = append(d.Advice, AdviceSection{"Now it is back", d.Recovery})
	}
	d.Maintenance = d.Kind == "maintenance"
	d.StatusLabel = StatusLabel(d.Status)
	d.ImpactLabel = impactLabel(d.Impact)
	for _, c := range ev.Components {
		if c = oneLine(c); c != "" {
			d.Components = append(d.Components, c)
		}
	}

	type entry struct {
		TimelineEntry
		order int
	}
	entries := make([]entry, 0, len(ev.Timeline)+1)
	current := len(ev.Timeline) // arrival position of this update
	for i, u := range ev.Timeline {
		if ev.ID != "" && u.ID == ev.ID {
			current = i
			continue
		}
		status := oneLine(u.Status)
		entries = append(entries, entry{TimelineEntry{
			Status: status, StatusLabel: StatusLabel(status), Title: oneLine(u.Title),
			Body: multiLine(u.Body), OccurredAt: u.OccurredAt,
		}, i})
	}
	entries = append(entries, entry{TimelineEntry{
		Status: d.Status, StatusLabel: d.StatusLabel, Title: d.Title, Body: d.Body,
		OccurredAt: d.OccurredAt, Current: true,
	}, current})
	slices.SortFunc(entries, func(a, b entry) int {
		if c := b.OccurredAt.Compare(a.OccurredAt); c != 0 {
			return c
		}
		return cmp.Compare(b.order, a.order)
	})
	d.Timeline = make([]TimelineEntry, len(entries))
	for i, e := range entries {
		d.Timeline[i] = e.TimelineEntry
	}
	return d
}

// runbooks normalises runbooks, dropping empty ones.
func runbooks(in []Runbook) []Runbook {
	var out []Runbook
	for _, r := range in {
		if t := multiLine(r.Text); t != "" {
			out = append(out, Runbook{Component: oneLine(r.Component), Text: t})
		}
	}
	return out
}

// smsAdvice is the guidance or recovery as a text message says it: "What
// to do: …" or "Now it is back: …", one component after another.
func smsAdvice(d EmailData) string {
	var b strings.Builder
	for _, part := range []struct {
		label string
		rs    []Runbook
	}{{"What to do:", d.Guidance}, {"Now it is back:", d.Recovery}} {
		for i, r := range part.rs {
			if i == 0 {
				b.WriteString(part.label)
			}
			b.WriteByte(' ')
			if len(part.rs) > 1 {
				b.WriteString(r.Component + ": ")
			}
			b.WriteString(r.Text)
		}
	}
	return b.String()
}

// newNonce returns a random string, unguessable by whoever wrote the event
// and (checked, to be certain) found nowhere in it, so that the
// placeholders built from it cannot be forged by event text.
func newNonce(ev Event) string {
	for {
		nonce := "crier" + rand.Text()
		if !eventContains(ev, nonce) {
			return nonce
		}
	}
}

func eventContains(ev Event, s string) bool {
	if strings.Contains(ev.ID, s) || strings.Contains(ev.IncidentID, s) || strings.Contains(ev.Kind, s) ||
		strings.Contains(ev.Status, s) || strings.Contains(ev.Impact, s) || strings.Contains(ev.Title, s) ||
		strings.Contains(ev.Body, s) || strings.Contains(ev.StatusURL, s) {
		return true
	}
	for _, c := range ev.Components {
		if strings.Contains(c, s) {
			return true
		}
	}
	for _, u := range ev.Timeline {
		if strings.Contains(u.ID, s) || strings.Contains(u.Status, s) || strings.Contains(u.Title, s) ||
			strings.Contains(u.Body, s) {
			return true
		}
	}
	for _, r := range slices.Concat(ev.Guidance, ev.Recovery) {
		if strings.Contains(r.Component, s) || strings.Contains(r.Text, s) {
			return true
		}
	}
	return false
}

// Subject returns the email subject line: one line, at most
// Config.SubjectMaxRunes characters, the same for every recipient.
func (p *Prepared) Subject() string { return p.subject }

// Email is a rendered email.
type Email struct {
	// Subject is a single line without control characters.
	Subject string
	// Text is the plain-text part, HTML the HTML part (UTF-8).
	Text string
	HTML string
}

// Email personalises the prepared email for rc: the name and the manage and
// unsubscribe links are escaped for where the templates put them. It
// allocates the two bodies and nothing else.
func (p *Prepared) Email(rc Recipient) Email {
	var v values
	v.set(rc)
	i := 0
	if v.raw[slotName] != "" {
		i = 1
	}
	return Email{
		Subject: p.subject,
		Text:    p.text[i].fill(&v),
		HTML:    p.html[i].fill(&v),
	}
}

// SMS is a rendered text message.
type SMS struct {
	// Body is the message text, valid UTF-8.
	Body string
	// Encoding is EncodingGSM7 or EncodingUCS2, and Segments the number of
	// segments the message takes (see Segments).
	Encoding string
	Segments int
	// Truncated reports that the event's body was shortened to fit.
	Truncated bool
}

// SMS personalises the prepared text message for rc. Its link is the
// event's StatusURL when set (the message is then the same for everyone and
// costs nothing to personalise), else rc.ManageURL; from a one-way sender,
// a text that asks for acknowledgement links to rc.AckURL instead.
//
// Only the event body is shortened, at a word boundary when one is near,
// and marked with "..." (GSM-7) or "…" (UCS-2); the link and the rest of
// the template are never cut. If the message cannot fit even with no body
// at all, it is returned with no body and more segments than the limit.
func (p *Prepared) SMS(rc Recipient) SMS {
	if p.static != nil {
		return *p.static
	}
	if p.ackLink {
		return p.sms.render(oneLine(rc.AckURL))
	}
	return p.sms.render(oneLine(rc.ManageURL))
}

// sampleEvents are rendered by New to check the templates.
func sampleEvents() []Event {
	at := time.Date(2025, 11, 10, 14, 18, 0, 0, time.UTC)
	from, until := at.Add(48*time.Hour), at.Add(50*time.Hour)
	return []Event{{
		ID: "sample-2", IncidentID: "sample", Kind: "incident", Status: "update", Impact: "major",
		Title: "Sample incident", Body: "Line one.\nLine two.\n\nSecond paragraph.",
		Components: []string{"Sample component"}, OccurredAt: at, StatusURL: "https://status.example/incidents/sample",
		Timeline: []Update{{ID: "sample-1", Status: "investigating", Body: "First update.", OccurredAt: at.Add(-time.Hour)}},
		Guidance: []Runbook{{Component: "Sample component", Text: "Do this now."}, {Component: "Other", Text: "And this."}},
		Recovery: []Runbook{{Component: "Sample component", Text: "Then this."}},
		AskAck:   true,
	}, {
		ID: "sample-m", IncidentID: "sample-m", Kind: "maintenance", Status: "scheduled", Impact: "none",
		Title: "Sample maintenance", Body: "Planned work.", Components: []string{"Sample component"},
		OccurredAt: at, ScheduledFor: &from, ScheduledUntil: &until,
	}}
}

// errMissingSlot is wrapped when a template leaves out a required value.
var errMissingSlot = errors.New("required value not shown")
