package devenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/render"
)

// OutboxConfig configures an Outbox.
type OutboxConfig struct {
	// Limit is how many messages are kept, the oldest dropped first
	// (default 1000).
	Limit int
	// BaseURL is the public URL of the server, used in the log line of
	// each captured message (default none: paths only).
	BaseURL string
	// Log gets one line per captured message; nil discards them.
	Log *slog.Logger
}

// Item is one captured message.
type Item struct {
	ID         int64     `json:"id"`
	At         time.Time `json:"at"`
	Channel    string    `json:"channel"`
	DeliveryID int64     `json:"delivery_id"`
	To         string    `json:"to"`
	// ProviderID is what the Sender returned, as a provider's message id.
	ProviderID string `json:"provider_id"`
	// Subject, HTML and the Message-ID and unsubscribe targets are set for
	// email; Text is the plain-text part of an email or the body of a text.
	Subject           string `json:"subject,omitempty"`
	Text              string `json:"text"`
	HTML              string `json:"html,omitempty"`
	MessageID         string `json:"message_id,omitempty"`
	UnsubscribeURL    string `json:"unsubscribe_url,omitempty"`
	UnsubscribeMailto string `json:"unsubscribe_mailto,omitempty"`
	// Encoding and Segments describe a text message as an SMS provider
	// would bill it (see render.Segments).
	Encoding string `json:"encoding,omitempty"`
	Segments int    `json:"segments,omitempty"`
}

// Outbox keeps the messages its Senders capture, in memory, and shows them
// on web pages. It is safe for concurrent use.
type Outbox struct {
	cfg OutboxConfig
	run string // makes provider ids unique across runs on one database

	mu    sync.Mutex
	items []Item // oldest first
	next  int64
}

// NewOutbox returns an empty outbox.
func NewOutbox(cfg OutboxConfig) *Outbox {
	if cfg.Limit <= 0 {
		cfg.Limit = 1000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &Outbox{cfg: cfg, run: hex.EncodeToString(b)}
}

// Sender returns the deliver.Sender that captures the messages of one
// channel (deliver.ChannelEmail or deliver.ChannelSMS) into the outbox.
func (o *Outbox) Sender(channel string) deliver.Sender {
	return &captureSender{o: o, channel: channel}
}

type captureSender struct {
	o       *Outbox
	channel string
}

// Send captures m and returns an id unique to this outbox and run.
func (s *captureSender) Send(ctx context.Context, m deliver.Message) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", &deliver.TransientError{Err: err}
	}
	it := s.o.add(s.channel, m)
	s.o.cfg.Log.InfoContext(ctx, "message captured in the outbox", "channel", it.Channel, "to", it.To,
		"delivery_id", it.DeliveryID, "view", s.o.cfg.BaseURL+"/dev/outbox/"+strconv.FormatInt(it.ID, 10))
	return it.ProviderID, nil
}

func (o *Outbox) add(channel string, m deliver.Message) Item {
	it := Item{
		At: time.Now(), Channel: channel, DeliveryID: m.DeliveryID, To: m.To,
		Text: m.Text,
	}
	if channel == deliver.ChannelEmail {
		it.Subject, it.HTML, it.MessageID = m.Subject, m.HTML, m.MessageID
		it.UnsubscribeURL, it.UnsubscribeMailto = m.UnsubscribeURL, m.UnsubscribeMailto
	} else {
		it.Encoding, it.Segments = render.Segments(m.Text)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next++
	it.ID = o.next
	it.ProviderID = "dev-" + o.run + "-" + strconv.FormatInt(it.ID, 10)
	o.items = append(o.items, it)
	if len(o.items) > o.cfg.Limit {
		o.items = append(o.items[:0], o.items[len(o.items)-o.cfg.Limit:]...)
	}
	return it
}

// Items returns the captured messages, newest first.
func (o *Outbox) Items() []Item {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Item, len(o.items))
	for i, it := range o.items {
		out[len(out)-1-i] = it
	}
	return out
}

// Get returns the message with the given id.
func (o *Outbox) Get(id int64) (Item, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, it := range o.items {
		if it.ID == id {
			return it, true
		}
	}
	return Item{}, false
}

// Clear forgets every captured message.
func (o *Outbox) Clear() {
	o.mu.Lock()
	o.items = nil
	o.mu.Unlock()
}

// Mount adds the outbox pages to mux:
//
//	GET  /dev/outbox             the list, newest first (refreshes itself)
//	GET  /dev/outbox.json        the same as JSON
//	GET  /dev/outbox/{id}        one message: headers, the rendered email in a
//	                             sandboxed frame and its text part, or a text
//	                             with its encoding and segment count
//	GET  /dev/outbox/{id}/html   an email's HTML alone, sandboxed by CSP
//	POST /dev/outbox/clear       empty the outbox
func (o *Outbox) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /dev/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/dev/outbox", http.StatusFound)
	})
	mux.HandleFunc("GET /dev/outbox", o.list)
	mux.HandleFunc("GET /dev/outbox.json", o.listJSON)
	mux.HandleFunc("GET /dev/outbox/{id}", o.show)
	mux.HandleFunc("GET /dev/outbox/{id}/html", o.html)
	mux.HandleFunc("POST /dev/outbox/clear", func(w http.ResponseWriter, r *http.Request) {
		o.Clear()
		http.Redirect(w, r, "/dev/outbox", http.StatusSeeOther)
	})
}

// pageHeaders are set on the outbox's own pages: they load nothing from
// elsewhere, run no script and frame only this server's sandboxed emails.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

type listRow struct {
	Item
	Summary string
}

func (o *Outbox) list(w http.ResponseWriter, r *http.Request) {
	items := o.Items()
	rows := make([]listRow, len(items))
	for i, it := range items {
		rows[i] = listRow{Item: it, Summary: it.Subject}
		if it.Channel != deliver.ChannelEmail {
			rows[i].Summary = truncate(it.Text, 90)
		}
	}
	pageHeaders(w)
	_ = listPage.Execute(w, struct{ Rows []listRow }{rows})
}

func (o *Outbox) listJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	items := o.Items()
	_ = json.NewEncoder(w).Encode(struct {
		Count int    `json:"count"`
		Items []Item `json:"items"`
	}{len(items), items})
}

func (o *Outbox) item(w http.ResponseWriter, r *http.Request) (Item, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		http.NotFound(w, r)
		return Item{}, false
	}
	it, ok := o.Get(id)
	if !ok {
		http.Error(w, "no such message in the outbox (it keeps the most recent ones, and nothing across restarts)", http.StatusNotFound)
	}
	return it, ok
}

func (o *Outbox) show(w http.ResponseWriter, r *http.Request) {
	it, ok := o.item(w, r)
	if !ok {
		return
	}
	pageHeaders(w)
	_ = showPage.Execute(w, struct {
		Item
		Chars int
	}{it, utf8.RuneCountInString(it.Text)})
}

// html serves an email's HTML part on its own. The CSP sandbox gives it an
// opaque origin with no scripts, forms or plugins, whether it is framed by
// the message page or opened directly.
func (o *Outbox) html(w http.ResponseWriter, r *http.Request) {
	it, ok := o.item(w, r)
	if !ok {
		return
	}
	if it.HTML == "" {
		http.Error(w, "this message has no HTML part", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(it.HTML))
}

func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

const style = `<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
header{background:#1d2430;color:#fff;padding:.8rem 1.5rem;display:flex;gap:1rem;align-items:center}
header a{color:#fff}main{padding:1rem 1.5rem;max-width:72rem}
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #e3e6eb;vertical-align:top}
th{font-size:.8rem;text-transform:uppercase;color:#5a6472}.ch{font-weight:600}
.email{color:#1a5fb4}.sms{color:#26a269}.muted{color:#5a6472}
pre{white-space:pre-wrap;background:#fff;border:1px solid #e3e6eb;padding:.8rem;font:13px/1.4 ui-monospace,monospace}
iframe{width:100%;height:38rem;border:1px solid #e3e6eb;background:#fff}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;background:#fff;padding:.8rem;border:1px solid #e3e6eb}
dt{color:#5a6472}dd{margin:0;word-break:break-all}button{font:inherit}
</style>`

var listPage = template.Must(template.New("list").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>crier dev outbox ({{len .Rows}})</title>` + style + `</head><body>
<header><strong>crier dev outbox</strong><span class="muted">{{len .Rows}} captured, newest first; this page refreshes every 5 s</span>
<form method="post" action="/dev/outbox/clear" style="margin-left:auto"><button>Clear</button></form></header>
<main>
{{if .Rows}}<table>
<tr><th>#</th><th>Time</th><th>Channel</th><th>To</th><th>Subject or text</th><th>Segments</th></tr>
{{range .Rows}}<tr>
<td><a href="/dev/outbox/{{.ID}}">{{.ID}}</a></td>
<td>{{.At.Format "15:04:05"}}</td>
<td class="ch {{.Channel}}">{{.Channel}}</td>
<td>{{.To}}</td>
<td><a href="/dev/outbox/{{.ID}}">{{.Summary}}</a></td>
<td>{{if .Segments}}{{.Segments}} ({{.Encoding}}){{end}}</td>
</tr>{{end}}
</table>
{{else}}<p>Nothing captured yet. Publish an event with <code>crier publish</code> (the command crier dev printed at start-up) and the emails and texts it causes appear here.</p>{{end}}
</main></body></html>`))

var showPage = template.Must(template.New("show").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{if .Subject}}{{.Subject}}{{else}}Text to {{.To}}{{end}} — crier dev outbox</title>` + style + `</head><body>
<header><a href="/dev/outbox">← outbox</a><strong>#{{.ID}} <span class="ch">{{.Channel}}</span></strong></header>
<main>
<dl>
<dt>To</dt><dd>{{.To}}</dd>
<dt>Captured</dt><dd>{{.At.Format "2006-01-02 15:04:05 MST"}}</dd>
<dt>Delivery</dt><dd>{{.DeliveryID}} (provider id {{.ProviderID}})</dd>
{{if .Subject}}<dt>Subject</dt><dd>{{.Subject}}</dd>{{end}}
{{if .MessageID}}<dt>Message-ID</dt><dd>&lt;{{.MessageID}}&gt;</dd>{{end}}
{{if .UnsubscribeURL}}<dt>List-Unsubscribe</dt><dd><a href="{{.UnsubscribeURL}}" target="_blank" rel="noopener noreferrer">{{.UnsubscribeURL}}</a>{{if .UnsubscribeMailto}}<br>{{.UnsubscribeMailto}}{{end}}</dd>{{end}}
{{if .Segments}}<dt>Length</dt><dd>{{.Chars}} characters, {{.Encoding}}, <strong>{{.Segments}} segment{{if gt .Segments 1}}s{{end}}</strong></dd>{{end}}
</dl>
{{if .HTML}}<h2>HTML part</h2>
<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" src="/dev/outbox/{{.ID}}/html" title="rendered email"></iframe>
<p class="muted"><a href="/dev/outbox/{{.ID}}/html" target="_blank" rel="noopener noreferrer">Open the HTML alone</a></p>
<h2>Text part</h2>{{else}}<h2>Text</h2>{{end}}
<pre>{{.Text}}</pre>
</main></body></html>`))
