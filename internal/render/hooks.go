package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"unicode/utf8"
)

// Template files of the channels that post JSON.
const (
	fileWebhook = "webhook.json.tmpl"
	fileTeams   = "teams.json.tmpl"
	fileSlack   = "slack.json.tmpl"
)

// HookData is what the webhook, Teams and Slack templates are executed
// with: the email's data, the update's ids, and the recipient's links as
// they are (these messages are few, so each is rendered on its own rather
// than from placeholders).
type HookData struct {
	EmailData
	// ID is the update's event id, IncidentID its incident's.
	ID, IncidentID string
}

// hookFuncs are the functions the JSON templates can call besides the
// common ones.
var hookFuncs = template.FuncMap{
	// json quotes and escapes a value as JSON (leaving &, < and > as
	// they are: the output is not HTML).
	"json": func(v any) (string, error) {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return "", err
		}
		return strings.TrimSuffix(b.String(), "\n"), nil
	},
	// truncate cuts s to at most n characters, ending with "…" when cut.
	"truncate": func(n int, s string) string {
		if utf8.RuneCountInString(s) <= n {
			return s
		}
		return string([]rune(s)[:max(0, n-1)]) + "…"
	},
	// mrkdwn escapes the three characters Slack's mrkdwn gives a meaning.
	"mrkdwn": mrkdwn,
	// runbookLines is runbooks as mrkdwn lines, each after a line break,
	// named by component when there are several.
	"runbookLines": func(rs []Runbook, named bool) string {
		var b strings.Builder
		for _, r := range rs {
			b.WriteByte('\n')
			if named {
				b.WriteString("*" + mrkdwn(r.Component) + ":* ")
			}
			b.WriteString(mrkdwn(r.Text))
		}
		return b.String()
	},
}

var mrkdwn = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

// errNotJSON is wrapped when a JSON template's output is not one JSON
// value.
var errNotJSON = errors.New("output is not valid JSON")

// hooks holds what Prepared needs to render the JSON messages.
type hooks struct {
	r    *Renderer
	data HookData
}

// Webhook renders the signed webhook's JSON body for one recipient.
func (p *Prepared) Webhook(rc Recipient) ([]byte, error) {
	return p.hooks.render(p.hooks.r.webhook, fileWebhook, rc)
}

// Teams renders the Adaptive Card message for one recipient.
func (p *Prepared) Teams(rc Recipient) ([]byte, error) {
	return p.hooks.render(p.hooks.r.teams, fileTeams, rc)
}

// Slack renders the Block Kit message for one recipient.
func (p *Prepared) Slack(rc Recipient) ([]byte, error) {
	return p.hooks.render(p.hooks.r.slack, fileSlack, rc)
}

func (h *hooks) render(t *template.Template, name string, rc Recipient) ([]byte, error) {
	d := h.data
	d.Recipient = rc
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return nil, h.r.templateError(name, err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, buf.Bytes()); err != nil {
		return nil, h.r.templateError(name, fmt.Errorf("%w: %v", errNotJSON, err))
	}
	return out.Bytes(), nil
}

// prepareHooks keeps the data of ev for the JSON templates and renders
// each once, with example links, so that a template that fails or does
// not give JSON fails Prepare (and New) rather than a delivery.
func (r *Renderer) prepareHooks(ev Event, d EmailData) (*hooks, error) {
	if d.Components == nil {
		d.Components = []string{}
	}
	h := &hooks{r: r, data: HookData{EmailData: d, ID: oneLine(ev.ID), IncidentID: oneLine(ev.IncidentID)}}
	rc := Recipient{ManageURL: "https://crier.invalid/manage/x", UnsubscribeURL: "https://crier.invalid/unsubscribe/x"}
	for name, t := range map[string]*template.Template{fileWebhook: r.webhook, fileTeams: r.teams, fileSlack: r.slack} {
		if _, err := h.render(t, name, rc); err != nil {
			return nil, err
		}
	}
	return h, nil
}
