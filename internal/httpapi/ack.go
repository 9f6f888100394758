package httpapi

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/publicurl"
	"github.com/crier-dev/crier/internal/render"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/token"
)

// Limits of what an acknowledgement carries.
const (
	maxAckNote = 1000
	maxAckBy   = 200
)

// ackView is the acknowledgement page.
type ackView struct {
	Action                       string
	Title, StatusLabel, Impact   string
	OccurredAt, Components, Body string
	Guidance                     []adviceView
	Actions                      []string
	Acknowledged                 bool
	By, At, AckAction            string
}

type adviceView struct {
	Key, Name  string
	Paragraphs [][]string
}

// ack shows (GET) an incident with the form to acknowledge it, and
// records (POST) the acknowledgement for the recipient's whole home. A GET
// changes nothing, so a mail scanner that follows links acknowledges
// nothing.
func (a *API) ack(w http.ResponseWriter, r *http.Request) {
	tok := r.PathValue("token")
	id, _, err := a.d.Signer.Verify(token.PurposeAck, tok)
	if err != nil || id <= 0 {
		a.invalidLink(w, r)
		return
	}
	target, err := a.d.Store.AckTargetOf(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		a.invalidLink(w, r)
		return
	}
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	v, err := a.ackView(r, target, publicurl.AckPath(tok))
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	if r.Method == http.MethodPost && !v.Acknowledged {
		if err := parseForm(w, r); err != nil {
			a.renderMessage(w, r, http.StatusBadRequest, message{Heading: "The form could not be read", Text: []string{"Please go back and try again."}})
			return
		}
		in := store.Ack{
			IncidentID: target.IncidentID, Home: target.Home, EventID: target.EventID, SubscriberID: target.SubscriberID,
			Via: store.AckViaLink, By: oneLineInput(r.PostFormValue("by"), maxAckBy), Note: noteInput(r.PostFormValue("note")),
		}
		if act := strings.TrimSpace(r.PostFormValue("action")); slices.Contains(v.Actions, act) {
			in.Action = act
		}
		got, first, err := a.d.Store.Acknowledge(r.Context(), in)
		if err != nil {
			a.unavailable(w, r, err)
			return
		}
		if first {
			a.d.Log.InfoContext(r.Context(), "incident acknowledged", "incident_id", target.IncidentID, "home", target.Home, "via", store.AckViaLink)
		}
		a.fillAck(&v, got)
	}
	a.render(w, r, http.StatusOK, "ack", "Acknowledge: "+v.Title, v)
}

func (a *API) ackView(r *http.Request, t store.AckTarget, action string) (ackView, error) {
	ev, err := a.d.Store.GetEvent(r.Context(), t.EventID)
	if err != nil {
		return ackView{}, err
	}
	catalog, err := a.d.Store.ListComponents(r.Context())
	if err != nil {
		return ackView{}, err
	}
	byKey := map[string]store.Component{}
	for _, c := range catalog {
		byKey[c.Key] = c
	}
	v := ackView{
		Action: action, Title: ev.Title, StatusLabel: render.StatusLabel(ev.Status), Impact: ev.Impact,
		OccurredAt: a.datetime(ev.OccurredAt), Body: ev.Body,
	}
	var names []string
	seen := map[string]bool{}
	for _, k := range ev.Components {
		if c, ok := byKey[k]; ok {
			names = append(names, c.Name)
		}
		// The guidance and actions of the component, or of its nearest
		// ancestor that has some, as the messages give them.
		c, ok := store.NearestWith(byKey, k, func(c store.Component) bool { return c.Guidance != "" || len(c.Actions) > 0 })
		if !ok || seen[c.Key] {
			continue
		}
		seen[c.Key] = true
		if c.Guidance != "" {
			v.Guidance = append(v.Guidance, adviceView{Key: strings.ReplaceAll(c.Key, "/", "-"), Name: c.Name, Paragraphs: render.Paragraphs(c.Guidance)})
		}
		for _, act := range c.Actions {
			if !slices.Contains(v.Actions, act) {
				v.Actions = append(v.Actions, act)
			}
		}
	}
	v.Components = strings.Join(names, ", ")
	got, err := a.d.Store.Acknowledgement(r.Context(), t.IncidentID, t.Home)
	switch {
	case err == nil:
		a.fillAck(&v, got)
	case !errors.Is(err, store.ErrNotFound):
		return ackView{}, err
	}
	return v, nil
}

func (a *API) fillAck(v *ackView, got store.Ack) {
	v.Acknowledged, v.By, v.AckAction, v.At = true, got.By, got.Action, a.datetime(got.AcknowledgedAt)
}

// datetime shows a time as the messages do, in CRIER_TIMEZONE.
func (a *API) datetime(t time.Time) string {
	return t.In(a.loc).Format(render.DateTimeLayout)
}

// oneLineInput trims a form field to one line of at most max characters,
// dropping control and formatting characters.
func oneLineInput(v string, max int) string {
	v = strings.Join(strings.Fields(v), " ")
	v = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || event.UnsafeInLine(r) {
			return -1
		}
		return r
	}, v)
	if rs := []rune(v); len(rs) > max {
		v = string(rs[:max])
	}
	return v
}

// noteInput keeps a note's lines, each as oneLineInput keeps a field.
func noteInput(v string) string {
	var lines []string
	for l := range strings.SplitSeq(strings.ReplaceAll(v, "\r\n", "\n"), "\n") {
		lines = append(lines, oneLineInput(l, maxAckNote))
	}
	out := strings.TrimSpace(strings.Join(lines, "\n"))
	if rs := []rune(out); len(rs) > maxAckNote {
		out = string(rs[:maxAckNote])
	}
	return out
}

// ackInput is the body of POST /v1/incidents/{id}/acknowledgements: the
// support desk recording a home's acknowledgement given by phone.
type ackInput struct {
	Organisation *string `json:"organisation"`
	By           *string `json:"by"`
	Note         *string `json:"note"`
	Action       *string `json:"action"`
}

func (a *API) postAcknowledgement(w http.ResponseWriter, r *http.Request) error {
	incident := r.PathValue("id")
	var in ackInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if in.Organisation == nil || strings.TrimSpace(*in.Organisation) == "" {
		return fail(http.StatusUnprocessableEntity, "organisation", "organisation is required: the key of the home that acknowledged")
	}
	home := strings.TrimSpace(*in.Organisation)
	if _, err := a.d.Store.GetOrganisation(r.Context(), home); errors.Is(err, store.ErrNotFound) && !strings.HasPrefix(home, "subscriber:") {
		return fail(http.StatusUnprocessableEntity, "organisation", "no organisation %q", home)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	events, err := a.d.Store.IncidentEvents(r.Context(), incident)
	if err != nil {
		return err
	}
	if len(events) == 0 {
		return fail(http.StatusNotFound, "", "no incident %q", incident)
	}
	ack := store.Ack{
		IncidentID: incident, Home: home, EventID: events[0].ID, Via: store.AckViaAPI,
		By: oneLineInput(deref(in.By), maxAckBy), Note: noteInput(deref(in.Note)), Action: oneLineInput(deref(in.Action), maxActionLen),
	}
	if err := checkText("by", ack.By, maxAckBy, false); err != nil {
		return err
	}
	got, first, err := a.d.Store.Acknowledge(r.Context(), ack)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if !first {
		status = http.StatusOK // the home had acknowledged already: that one counts
	} else {
		a.d.Log.InfoContext(r.Context(), "incident acknowledged", "incident_id", incident, "home", home, "via", store.AckViaAPI)
	}
	writeJSON(w, status, got)
	return nil
}
