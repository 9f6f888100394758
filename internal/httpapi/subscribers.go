package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/subscriber"
)

// subscriberInput is the body of POST and PATCH /v1/subscribers. In a PATCH
// absent fields stay as they are. internal/subscriber checks it.
type subscriberInput struct {
	Email *string `json:"email"`
	Phone *string `json:"phone"`
	Name  *string `json:"name"`
	// Organisation is the key of the subscriber's home, or its name (a
	// home of that name is made when none has it); Role is "primary" or
	// "escalation".
	Organisation *string   `json:"organisation"`
	Role         *string   `json:"role"`
	Components   *[]string `json:"components"`
	// WebhookURL, TeamsURL and SlackURL are destinations: https URLs that
	// get a signed JSON POST, a Teams Adaptive Card or Slack blocks. A new
	// or changed webhook_url makes a secret, answered once as
	// webhook_secret.
	WebhookURL *string `json:"webhook_url"`
	TeamsURL   *string `json:"teams_url"`
	SlackURL   *string `json:"slack_url"`
	// Channels lists the channels to use (default: every channel with an
	// address). An address whose channel is not listed is kept but opted
	// out.
	Channels *[]string `json:"channels"`
	// Confirmed marks the used channels' addresses as confirmed: the
	// administrator vouches for them. Otherwise each waits for double
	// opt-in (the person confirms from the subscribe page).
	Confirmed *bool `json:"confirmed"`
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// domain returns the input as internal/subscriber takes it.
func (in subscriberInput) domain() subscriber.Input {
	return subscriber.Input{
		Email: in.Email, Phone: in.Phone, Name: in.Name, Organisation: in.Organisation,
		WebhookURL: in.WebhookURL, TeamsURL: in.TeamsURL, SlackURL: in.SlackURL, Role: in.Role,
		Components: in.Components, Channels: in.Channels, Confirmed: deref(in.Confirmed),
	}
}

// subscriberProblem answers a refusal of internal/subscriber: 422 naming
// the field, 409 for an address that belongs to another subscriber.
func subscriberProblem(err error) error {
	var fe *subscriber.FieldError
	switch {
	case errors.As(err, &fe):
		return fail(http.StatusUnprocessableEntity, fe.Field, "%s", fe.Reason)
	case errors.Is(err, subscriber.ErrConflict):
		return fail(http.StatusConflict, "", "a subscriber with this email address or phone number already exists")
	}
	return err
}

func (a *API) createSubscriber(w http.ResponseWriter, r *http.Request) error {
	var in subscriberInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	sub, err := a.subs.Create(r.Context(), in.domain())
	if err != nil {
		return subscriberProblem(err)
	}
	a.d.Log.InfoContext(r.Context(), "subscriber created", "subscriber_id", sub.ID, "confirmed", deref(in.Confirmed))
	w.Header().Set("Location", "/v1/subscribers/"+strconv.FormatInt(sub.ID, 10))
	writeJSON(w, http.StatusCreated, sub)
	return nil
}

// subscriberID parses the {id} of the path; anything else is 404.
func subscriberID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fail(http.StatusNotFound, "", "not found")
	}
	return id, nil
}

func (a *API) getSubscriber(w http.ResponseWriter, r *http.Request) error {
	id, err := subscriberID(r)
	if err != nil {
		return err
	}
	sub, err := a.d.Store.GetSubscriber(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sub)
	return nil
}

func (a *API) listSubscribers(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := pageQuery(r)
	if err != nil {
		return err
	}
	subs, err := a.d.Store.ListSubscribers(r.Context(), after, int(limit)+1)
	if err != nil {
		return err
	}
	var next *string
	if len(subs) > int(limit) {
		subs = subs[:limit]
		c := strconv.FormatInt(subs[len(subs)-1].ID, 10)
		next = &c
	}
	if subs == nil {
		subs = []store.Subscriber{}
	}
	writeJSON(w, http.StatusOK, struct {
		Subscribers []store.Subscriber `json:"subscribers"`
		Next        *string            `json:"next"`
	}{subs, next})
	return nil
}

// exportSubscribers answers every subscriber as CSV, in the import's
// columns plus each channel's state (subscriber.ExportCSV). A failure
// after the first rows are sent cuts the answer short, so a partial file
// is never mistaken for a whole one.
func (a *API) exportSubscribers(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="subscribers.csv"`)
	h.Set("Cache-Control", "no-store")
	cw := &countingWriter{w: w}
	if err := subscriber.ExportCSV(r.Context(), a.d.Store, cw); err != nil {
		if cw.n == 0 {
			h.Del("Content-Disposition")
			return err
		}
		a.d.Log.ErrorContext(r.Context(), "subscriber export cut short", "error", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (a *API) patchSubscriber(w http.ResponseWriter, r *http.Request) error {
	id, err := subscriberID(r)
	if err != nil {
		return err
	}
	var in subscriberInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	sub, err := a.subs.Update(r.Context(), id, in.domain())
	if err != nil {
		return subscriberProblem(err)
	}
	a.d.Log.InfoContext(r.Context(), "subscriber updated", "subscriber_id", id)
	writeJSON(w, http.StatusOK, sub)
	return nil
}

func (a *API) deleteSubscriber(w http.ResponseWriter, r *http.Request) error {
	id, err := subscriberID(r)
	if err != nil {
		return err
	}
	if err := a.d.Store.DeleteSubscriber(r.Context(), id); err != nil {
		return err
	}
	a.d.Log.InfoContext(r.Context(), "subscriber deleted", "subscriber_id", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
