package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/intake"
	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/redact"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/stream"
)

// publishAnswer is the body of a successful POST /v1/events.
type publishAnswer struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// postEvent admits an event as the fan-out consumer does (package intake),
// publishes it to JetStream with Nats-Msg-Id and answers once the stream
// acknowledged it.
func (a *API) postEvent(w http.ResponseWriter, r *http.Request) error {
	if err := requireMediaType(r, "application/json"); err != nil {
		return err
	}
	raw, err := readBody(w, r, event.MaxPayloadBytes)
	if err != nil {
		return err
	}
	src := intake.Source{Via: "http"}
	if err := wellFormedObject(raw); err != nil {
		// Refused before it can be decoded, with the status a body that is
		// not a JSON object gets (400, not 422).
		a.intake.Received(src)
		if rerr := a.intake.Reject(r.Context(), raw, "", src, &event.ValidationError{Reason: err.Error()}); rerr != nil {
			a.d.Log.WarnContext(r.Context(), "record rejected event", "error", rerr)
		}
		return err
	}
	ev, err := a.admit(r, raw, src)
	if err != nil {
		return err
	}
	return a.publish(w, r, ev, raw)
}

// admit admits raw (package intake): an invalid event is a 422 naming the
// field.
func (a *API) admit(r *http.Request, raw []byte, src intake.Source) (event.Event, error) {
	ev, verr, err := a.intake.Admit(r.Context(), raw, src)
	if verr != nil {
		if err != nil {
			// The refusal stands; only its record is missing.
			a.d.Log.WarnContext(r.Context(), "record rejected event", "error", err)
		}
		return event.Event{}, fail(http.StatusUnprocessableEntity, verr.Field, "%s", verr.Error())
	}
	return ev, err
}

// publish publishes an admitted event to JetStream with Nats-Msg-Id and
// answers once the stream acknowledged it: 202, or 200 for a duplicate.
func (a *API) publish(w http.ResponseWriter, r *http.Request, ev event.Event, raw []byte) error {
	// An event stored long ago (beyond the stream's duplicate window) is
	// still a duplicate.
	if _, err := a.d.Store.GetEvent(r.Context(), ev.ID); err == nil {
		writeJSON(w, http.StatusOK, publishAnswer{ID: ev.ID, Duplicate: true})
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if a.d.JetStream == nil {
		return fail(http.StatusServiceUnavailable, "", "JetStream is not connected; the event was not stored")
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.PublishTimeout)
	defer cancel()
	res, err := stream.Publish(ctx, a.d.JetStream, ev, raw)
	if err != nil {
		a.d.Log.WarnContext(r.Context(), "event not acknowledged by JetStream", "event_id", ev.ID, "error", err)
		return fail(http.StatusServiceUnavailable, "", "JetStream did not acknowledge the event, so it may not be stored; send it again (the id makes a repeat safe)")
	}
	a.d.Log.InfoContext(r.Context(), "event published", "event_id", ev.ID, "incident_id", ev.IncidentID, "stream_seq", res.Sequence, "duplicate", res.Duplicate)
	if res.Duplicate {
		writeJSON(w, http.StatusOK, publishAnswer{ID: ev.ID, Duplicate: true})
		return nil
	}
	w.Header().Set("Location", "/v1/events/"+url.PathEscape(ev.ID))
	writeJSON(w, http.StatusAccepted, publishAnswer{ID: ev.ID})
	return nil
}

// eventView is an event with its delivery counts per channel and state.
type eventView struct {
	store.StoredEvent
	Deliveries map[string]map[string]int64 `json:"deliveries"`
}

func newEventView(e store.StoredEvent, counts []store.StateCount) eventView {
	v := eventView{StoredEvent: e, Deliveries: map[string]map[string]int64{}}
	for _, c := range counts {
		if v.Deliveries[c.Channel] == nil {
			v.Deliveries[c.Channel] = map[string]int64{}
		}
		v.Deliveries[c.Channel][c.State] = c.Count
	}
	return v
}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request) error {
	limit, err := queryInt(r, "limit", 50, 500)
	if err != nil {
		return err
	}
	var events []store.StoredEvent
	if inc := r.URL.Query().Get("incident_id"); inc != "" {
		events, err = a.d.Store.IncidentEvents(r.Context(), inc)
	} else {
		events, err = a.d.Store.RecentEvents(r.Context(), 0, int(max(1, limit)))
	}
	if err != nil {
		return err
	}
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	counts, err := a.d.Store.CountDeliveriesByEvent(r.Context(), ids)
	if err != nil {
		return err
	}
	out := make([]eventView, len(events))
	for i, e := range events {
		out[i] = newEventView(e, counts[e.ID])
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
	return nil
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request) error {
	e, err := a.d.Store.GetEvent(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	counts, err := a.d.Store.CountDeliveries(r.Context(), store.Scope{EventID: e.ID})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newEventView(e, counts))
	return nil
}

var deliveryStates = []string{
	store.StateQueued, store.StateSending, store.StateSent, store.StateDelivered,
	store.StateUndelivered, store.StateFailed, store.StateSuperseded, store.StateSuppressed,
}

// maskAddress hides most of an email address or phone number, and a
// destination URL's path and query.
func maskAddress(channel, addr string) string {
	switch channel {
	case deliver.ChannelSMS:
		return phone.Mask(addr)
	case deliver.ChannelEmail:
		return redact.Email(addr)
	}
	return redact.Destination(addr)
}

func (a *API) listDeliveries(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	channel, state := q.Get("channel"), q.Get("state")
	if channel != "" && !slices.Contains(deliver.Channels, channel) {
		return fail(http.StatusBadRequest, "channel", "channel must be one of %s", strings.Join(deliver.Channels, ", "))
	}
	if state != "" && !slices.Contains(deliveryStates, state) {
		return fail(http.StatusBadRequest, "state", "state must be one of %s", strings.Join(deliveryStates, ", "))
	}
	after, limit, err := pageQuery(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if _, err := a.d.Store.GetEvent(r.Context(), id); err != nil {
		return err
	}
	rows, err := a.d.Store.ListDeliveries(r.Context(), store.DeliveryFilter{
		Scope: store.Scope{EventID: id}, Channel: channel, State: state, AfterID: after, Limit: int(limit) + 1,
	})
	if err != nil {
		return err
	}
	var next *string
	if len(rows) > int(limit) {
		rows = rows[:limit]
		c := strconv.FormatInt(rows[len(rows)-1].ID, 10)
		next = &c
	}
	// Shown with the address masked, in its field and in the error text.
	for i, d := range rows {
		masked := maskAddress(d.Channel, d.Address)
		if d.Address != "" {
			d.LastError = strings.ReplaceAll(d.LastError, d.Address, masked)
		}
		d.Address, d.LastError = masked, redact.String(d.LastError)
		rows[i] = d
	}
	writeJSON(w, http.StatusOK, struct {
		Deliveries []store.Delivery `json:"deliveries"`
		Next       *string          `json:"next"`
	}{rows, next})
	return nil
}

// drillInput is the body of POST /v1/drills.
type drillInput struct {
	Components []string `json:"components"`
	Title      *string  `json:"title"`
	Body       *string  `json:"body"`
	Escalate   bool     `json:"escalate"`
}

// postDrill publishes a drill: a clearly marked test to every home on the
// components, asking them to acknowledge, escalating only with escalate.
// It goes through the intake like any event.
func (a *API) postDrill(w http.ResponseWriter, r *http.Request) error {
	var in drillInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	ev := event.NewDrill(a.cfg.Now(), in.Components, deref(in.Title), deref(in.Body), in.Escalate)
	raw, err := event.Encode(ev)
	if err != nil {
		return err
	}
	ev, err = a.admit(r, raw, intake.Source{Via: "http"})
	if err != nil {
		return err
	}
	return a.publish(w, r, ev, raw)
}
