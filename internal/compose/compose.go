// Package compose turns a claimed delivery into the message to send: it
// loads the event, its incident's timeline and the catalog's display names
// once per event, renders the templates once per event with
// internal/render, and personalises per recipient with their links.
package compose

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/publicurl"
	"github.com/crier-dev/crier/internal/render"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/token"
)

// Config says where links point and how long a rendered event is reused.
type Config struct {
	// PublicURL is crier's external base URL, e.g. https://status.example.org.
	PublicURL string
	// MailDomain is the domain of Message-IDs (the From address's domain).
	MailDomain string
	// UnsubscribeMailbox, if set, is the address of the mailto:
	// List-Unsubscribe target (an operator's mailbox).
	UnsubscribeMailbox string
	// CacheFor is how long one rendering of an event is reused (default
	// 30s); a late-arriving older update shows in later renderings.
	CacheFor time.Duration
	// AckImpacts are the impacts whose incidents ask each home to
	// acknowledge their first update (CRIER_ACK_IMPACTS); none: no
	// acknowledgement is asked.
	AckImpacts []string
}

// Composer implements deliver.Composer.
type Composer struct {
	cfg      Config
	store    *store.Store
	renderer *render.Renderer
	signer   *token.Signer
	now      func() time.Time
	// links builds the URLs of pages and webhooks (CRIER_PUBLIC_URL).
	links publicurl.Base

	mu    sync.Mutex
	cache map[string]*entry
}

type entry struct {
	once     sync.Once
	prepared *render.Prepared
	err      error
	expires  time.Time
}

// New returns a Composer.
func New(cfg Config, st *store.Store, r *render.Renderer, signer *token.Signer) *Composer {
	if cfg.CacheFor <= 0 {
		cfg.CacheFor = 30 * time.Second
	}
	return &Composer{
		cfg: cfg, store: st, renderer: r, signer: signer, now: time.Now, cache: map[string]*entry{},
		links: publicurl.New(cfg.PublicURL),
	}
}

// Compose renders the message for one delivery.
func (c *Composer) Compose(ctx context.Context, d store.Claimed) (deliver.Message, error) {
	p, err := c.prepared(ctx, d.EventID)
	if err != nil {
		return deliver.Message{}, err
	}
	m := deliver.Message{DeliveryID: d.ID, Channel: d.Channel, To: d.Address}
	switch d.Channel {
	case deliver.ChannelWebhook, deliver.ChannelTeams, deliver.ChannelSlack:
		return c.composeHook(ctx, p, d, m)
	}
	rc := render.Recipient{
		ManageURL:      c.ManageURL(d.SubscriberID),
		UnsubscribeURL: c.UnsubscribeURL(d.SubscriberID, d.Channel),
	}
	if p.AsksAck() {
		rc.AckURL = c.AckURL(d.ID)
	}
	switch d.Channel {
	case deliver.ChannelEmail:
		e := p.Email(rc)
		m.Subject, m.Text, m.HTML = e.Subject, e.Text, e.HTML
		m.MessageID = MessageID(d.ID, d.EventID, c.cfg.MailDomain)
		m.UnsubscribeURL = rc.UnsubscribeURL
		if c.cfg.UnsubscribeMailbox != "" {
			m.UnsubscribeMailto = "mailto:" + c.cfg.UnsubscribeMailbox + "?subject=" +
				url.QueryEscape("unsubscribe "+c.signer.Make(token.PurposeUnsubscribeEmail, d.SubscriberID, 0))
		}
	case deliver.ChannelSMS:
		m.Text = p.SMS(rc).Body
		m.StatusCallback = c.links.TwilioStatus()
	default:
		return deliver.Message{}, fmt.Errorf("compose: unknown channel %q", d.Channel)
	}
	return m, nil
}

// composeHook renders a destination's JSON. A webhook is signed with its
// subscriber's secret, looked up per delivery: destinations are few.
func (c *Composer) composeHook(ctx context.Context, p *render.Prepared, d store.Claimed, m deliver.Message) (deliver.Message, error) {
	rc := render.Recipient{ManageURL: c.ManageURL(d.SubscriberID)}
	if p.AsksAck() {
		rc.AckURL = c.AckURL(d.ID)
	}
	var err error
	switch d.Channel {
	case deliver.ChannelWebhook:
		if m.Secret, err = c.store.WebhookSecret(ctx, d.SubscriberID); err != nil {
			return deliver.Message{}, err
		}
		m.Body, err = p.Webhook(rc)
	case deliver.ChannelTeams:
		m.Body, err = p.Teams(rc)
	default:
		m.Body, err = p.Slack(rc)
	}
	if err != nil {
		return deliver.Message{}, fmt.Errorf("compose %s: %w", d.Channel, err)
	}
	return m, nil
}

// runbooks returns, for each affected component, its advice (text of it),
// or its nearest ancestor's when it has none (store.NearestWith). Repeats
// are dropped.
func runbooks(byKey map[string]store.Component, keys []string, text func(store.Component) string) []render.Runbook {
	var out []render.Runbook
	seen := map[string]bool{}
	for _, k := range keys {
		c, ok := store.NearestWith(byKey, k, func(c store.Component) bool { return text(c) != "" })
		if ok && !seen[c.Key] {
			seen[c.Key] = true
			out = append(out, render.Runbook{Component: c.Name, Text: text(c)})
		}
	}
	return out
}

// AckURL is the acknowledgement page of a delivery.
func (c *Composer) AckURL(deliveryID int64) string {
	var tok [token.Len]byte
	c.signer.Encode(&tok, token.PurposeAck, deliveryID, 0)
	return c.links.Ack(tok[:])
}

// ManageURL is a subscriber's subscription page.
func (c *Composer) ManageURL(subscriberID int64) string {
	var tok [token.Len]byte
	c.signer.Encode(&tok, token.PurposeManage, subscriberID, 0)
	return c.links.Manage(tok[:])
}

// UnsubscribeURL is a subscriber's one-click unsubscribe link for channel.
func (c *Composer) UnsubscribeURL(subscriberID int64, channel string) string {
	var tok [token.Len]byte
	c.signer.Encode(&tok, token.UnsubscribePurpose(channel), subscriberID, 0)
	return c.links.Unsubscribe(tok[:])
}

// MessageID is the stable Message-ID of a delivery's email (without angle
// brackets): a resend of the same delivery carries the same id.
func MessageID(deliveryID int64, eventID, domain string) string {
	h := sha256.Sum256([]byte(eventID))
	var b strings.Builder
	b.Grow(len("crier.") + 20 + len(".") + 12 + len("@") + len(domain))
	b.WriteString("crier.")
	var n [20]byte
	b.Write(strconv.AppendInt(n[:0], deliveryID, 10))
	b.WriteByte('.')
	var x [12]byte
	hex.Encode(x[:], h[:6])
	b.Write(x[:])
	b.WriteByte('@')
	b.WriteString(domain)
	return b.String()
}

func (c *Composer) prepared(ctx context.Context, eventID string) (*render.Prepared, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.cache[eventID]
	if !ok || now.After(e.expires) {
		for id, old := range c.cache {
			if now.After(old.expires) {
				delete(c.cache, id)
			}
		}
		e = &entry{expires: now.Add(c.cfg.CacheFor)}
		c.cache[eventID] = e
	}
	c.mu.Unlock()
	e.once.Do(func() { e.prepared, e.err = c.prepare(ctx, eventID) })
	if e.err != nil {
		c.mu.Lock()
		if c.cache[eventID] == e {
			delete(c.cache, eventID)
		}
		c.mu.Unlock()
	}
	return e.prepared, e.err
}

func (c *Composer) prepare(ctx context.Context, eventID string) (*render.Prepared, error) {
	ev, err := c.store.GetEvent(ctx, eventID)
	if err != nil {
		return nil, err
	}
	updates, err := c.store.IncidentEvents(ctx, ev.IncidentID)
	if err != nil {
		return nil, err
	}
	components, err := c.store.ListComponents(ctx)
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(components))
	byKey := make(map[string]store.Component, len(components))
	for _, comp := range components {
		names[comp.Key] = comp.Name
		byKey[comp.Key] = comp
	}
	re := render.Event{
		ID: ev.ID, IncidentID: ev.IncidentID, Kind: ev.Kind, Status: ev.Status, Impact: ev.Impact,
		Title: ev.Title, Body: ev.Body, OccurredAt: ev.OccurredAt,
		ScheduledFor: ev.ScheduledFor, ScheduledUntil: ev.ScheduledUntil,
	}
	for _, k := range ev.Components {
		if n, ok := names[k]; ok {
			re.Components = append(re.Components, n)
		} else {
			re.Components = append(re.Components, k)
		}
	}
	// The timeline so far: updates up to this one in (occurred_at, arrival)
	// order, in arrival order as render expects.
	for _, u := range updates {
		if u.OccurredAt.After(ev.OccurredAt) || (u.OccurredAt.Equal(ev.OccurredAt) && u.Seq > ev.Seq) {
			continue
		}
		re.Timeline = append(re.Timeline, render.Update{ID: u.ID, Status: u.Status, Title: u.Title, Body: u.Body, OccurredAt: u.OccurredAt})
	}
	if ev.Kind == event.KindDrill {
		// Every drill is an incident of one update, and asks to be
		// acknowledged whatever its impact.
		re.AskAck = true
	}
	if ev.Kind == event.KindIncident {
		switch {
		case ev.Status == "resolved":
			re.Recovery = runbooks(byKey, ev.Components, func(c store.Component) string { return c.Recovery })
		case len(re.Timeline) <= 1: // the incident's first update
			re.Guidance = runbooks(byKey, ev.Components, func(c store.Component) string { return c.Guidance })
			re.AskAck = slices.Contains(c.cfg.AckImpacts, ev.Impact)
		}
	}
	p, err := c.renderer.Prepare(re)
	if err != nil {
		return nil, fmt.Errorf("render event %q: %w", eventID, err)
	}
	return p, nil
}
