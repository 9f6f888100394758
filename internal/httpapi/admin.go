package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/token"
)

// sessionCookie is the admin dashboard's session cookie. Its value is a
// token.Signer token for PurposeAdminSession and the API token signed in
// with (an HMAC of it, never the token itself), whose id is the session's
// row in admin_sessions and whose version is its expiry. A session is
// valid while its row lives: signing out deletes it, on every process at
// once, and "sign out everywhere" deletes them all. Removing the API token
// from CRIER_API_TOKENS ends the sessions signed in with it.
const sessionCookie = "crier_admin"

// dashboardEvents is how many recent events the dashboard shows.
const dashboardEvents = 50

func sessionPurpose(apiToken string) string { return token.PurposeAdminSession + ":" + apiToken }

// session returns the id of the live session the request's cookie names,
// or 0 when it names none.
func (a *API) session(r *http.Request) (int64, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return 0, nil
	}
	now := a.cfg.Now()
	var id int64
	for _, t := range a.cfg.APITokens {
		if sid, exp, err := a.d.Signer.Verify(sessionPurpose(t), c.Value); err == nil && int64(exp) > now.Unix() {
			id = sid
		}
	}
	if id <= 0 {
		return 0, nil
	}
	live, err := a.d.Store.AdminSessionLive(r.Context(), id, now)
	if err != nil || !live {
		return 0, err
	}
	return id, nil
}

// adminAuthorized reports whether the request carries a valid bearer token
// or the cookie of a live session.
func (a *API) adminAuthorized(r *http.Request) (bool, error) {
	if a.validAPIToken(bearer(r)) {
		return true, nil
	}
	id, err := a.session(r)
	return id != 0, err
}

// secure reports whether cookies must be Secure: the request came over
// HTTPS, or crier's public URL is HTTPS (TLS ends at a proxy).
func (a *API) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(a.cfg.PublicURL, "https://")
}

type loginView struct {
	Error string
}

func (a *API) signIn(w http.ResponseWriter, r *http.Request) {
	if ok, err := a.signInClient.allow(r.Context(), a.client(r), a.cfg.Now()); err != nil {
		a.unavailable(w, r, err)
		return
	} else if !ok {
		a.d.Log.WarnContext(r.Context(), "admin sign-in rate-limited")
		w.Header().Set("Retry-After", "60")
		a.render(w, r, http.StatusTooManyRequests, "login", "Sign in", loginView{Error: "Too many attempts: wait a minute and try again."})
		return
	}
	if err := parseForm(w, r); err != nil {
		a.render(w, r, http.StatusBadRequest, "login", "Sign in", loginView{Error: "The form could not be read: try again."})
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if !a.validAPIToken(tok) {
		a.d.Log.WarnContext(r.Context(), "admin sign-in refused")
		a.render(w, r, http.StatusUnauthorized, "login", "Sign in", loginView{Error: "That is not a valid API token."})
		return
	}
	now := a.cfg.Now()
	expires := now.Add(a.cfg.SessionTTL)
	id, err := a.d.Store.StartAdminSession(r.Context(), now, expires)
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: a.d.Signer.Make(sessionPurpose(tok), id, uint32(expires.Unix())), Path: "/admin",
		MaxAge: int(a.cfg.SessionTTL / time.Second), HttpOnly: true, Secure: a.secure(r), SameSite: http.SameSiteStrictMode,
	})
	a.d.Log.InfoContext(r.Context(), "admin signed in")
	http.Redirect(w, r, "/admin", http.StatusSeeOther)
}

// signOut ends the request's session, if it has one, and clears the
// cookie.
func (a *API) signOut(w http.ResponseWriter, r *http.Request) {
	id, err := a.session(r)
	if err == nil && id != 0 {
		err = a.d.Store.EndAdminSession(r.Context(), id)
	}
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	a.clearSession(w, r)
	http.Redirect(w, r, "/admin", http.StatusSeeOther)
}

// signOutEverywhere ends every admin session, on every process; only a
// signed-in administrator (or a bearer token) may.
func (a *API) signOutEverywhere(w http.ResponseWriter, r *http.Request) {
	if !a.requireAdmin(w, r) {
		return
	}
	n, err := a.d.Store.EndAllAdminSessions(r.Context(), a.cfg.Now())
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	a.d.Log.InfoContext(r.Context(), "admin sessions ended everywhere", "sessions", n)
	a.clearSession(w, r)
	http.Redirect(w, r, "/admin", http.StatusSeeOther)
}

func (a *API) clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: "/admin", MaxAge: -1,
		HttpOnly: true, Secure: a.secure(r), SameSite: http.SameSiteStrictMode,
	})
}

// requireAdmin answers the request with the sign-in form (401, or 429 once
// a client has presented too many wrong credentials) unless it is
// authorised, and reports whether it is.
func (a *API) requireAdmin(w http.ResponseWriter, r *http.Request) bool {
	ok, err := a.adminAuthorized(r)
	if err != nil {
		a.unavailable(w, r, err)
		return false
	}
	if ok {
		return true
	}
	switch limited, err := a.authFailed(r); {
	case err != nil:
		a.unavailable(w, r, err)
	case limited:
		w.Header().Set("Retry-After", retryAfterSeconds(a.cfg.AuthFailPerClient))
		a.render(w, r, http.StatusTooManyRequests, "login", "Sign in", loginView{Error: "Too many attempts: wait a minute and try again."})
	default:
		a.render(w, r, http.StatusUnauthorized, "login", "Sign in", loginView{})
	}
	return false
}

// Dashboard view.
type (
	dashboardView struct {
		Paused []pausedRow
		Events []eventRow
		Legend []string
	}
	pausedRow struct {
		Channel, Cause  string
		Since, SinceISO string
	}
	eventRow struct {
		ID, IncidentID, Title   string
		Status, Impact          string
		OccurredAt, OccurredISO string
		Notify                  bool
		Bars                    []deliveryBar
	}
	// deliveryBar is one channel's deliveries of an event as a stacked bar:
	// one segment per state, as wide as its share.
	deliveryBar struct {
		Channel  string
		Total    int64
		Label    string
		Segments []segment
	}
	segment struct {
		State string
		Count int64
		Pct   string
	}
)

// barStates is the order of the segments, from done to not done.
var barStates = []string{
	store.StateDelivered, store.StateSent, store.StateSending, store.StateQueued,
	store.StateUndelivered, store.StateFailed, store.StateSuperseded, store.StateSuppressed,
}

func deliveryBars(counts []store.StateCount) []deliveryBar {
	var bars []deliveryBar
	for _, ch := range deliver.Channels {
		byState := map[string]int64{}
		var total int64
		for _, c := range counts {
			if c.Channel == ch {
				byState[c.State] += c.Count
				total += c.Count
			}
		}
		if total == 0 {
			continue
		}
		b := deliveryBar{Channel: ch, Total: total}
		var parts []string
		for _, st := range barStates {
			n := byState[st]
			if n == 0 {
				continue
			}
			b.Segments = append(b.Segments, segment{State: st, Count: n, Pct: fmt.Sprintf("%.2f", float64(n)*100/float64(total))})
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
		b.Label = fmt.Sprintf("%s: %d in all: %s", ch, total, strings.Join(parts, ", "))
		bars = append(bars, b)
	}
	return bars
}

// dashboard lists recent events with their delivery bars, or asks to sign
// in.
func (a *API) dashboard(w http.ResponseWriter, r *http.Request) {
	if !a.requireAdmin(w, r) {
		return
	}
	events, err := a.d.Store.RecentEvents(r.Context(), 0, dashboardEvents)
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	counts, err := a.d.Store.CountDeliveriesByEvent(r.Context(), ids)
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	v := dashboardView{Legend: barStates}
	if a.d.Channels != nil {
		for _, c := range a.d.Channels() {
			if !c.Up {
				v.Paused = append(v.Paused, pausedRow{
					Channel: c.Channel, Cause: c.Cause,
					Since: c.Since.UTC().Format("2 Jan 2006 15:04:05 UTC"), SinceISO: c.Since.UTC().Format(time.RFC3339),
				})
			}
		}
	}
	for _, e := range events {
		v.Events = append(v.Events, eventRow{
			ID: e.ID, IncidentID: e.IncidentID, Title: e.Title, Status: e.Status, Impact: e.Impact, Notify: e.Notify,
			OccurredAt:  e.OccurredAt.UTC().Format("2 Jan 2006 15:04 UTC"),
			OccurredISO: e.OccurredAt.UTC().Format(time.RFC3339),
			Bars:        deliveryBars(counts[e.ID]),
		})
	}
	a.render(w, r, http.StatusOK, "dashboard", "Recent events", v)
}

// Incident page view.
type (
	incidentView struct {
		ID, Title, Status, Impact string
		Updates                   int
		Homes, Acknowledged       int64
		OverTime                  []ackBucket
		Path                      string
		Unacknowledged            bool
		Rows                      []homeRow
	}
	ackBucket struct {
		Within string
		Count  int
	}
	homeRow struct {
		Key, Home, Name, FirstTold, Channels string
		Delivered, NotDelivered              int
		Acknowledged                         bool
		AckAt, AckVia, AckBy, AckAction      string
	}
)

// ackWithin are the spans after the incident's first update over which
// the page counts acknowledgements.
var ackWithin = []time.Duration{5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, 4 * time.Hour}

// incidentPage shows, for an administrator, each home told of an incident
// and whether it acknowledged, the count over time, and a filter for the
// homes that have not.
func (a *API) incidentPage(w http.ResponseWriter, r *http.Request) {
	if !a.requireAdmin(w, r) {
		return
	}
	id := r.PathValue("id")
	sum, err := a.d.Store.IncidentSummary(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		a.renderMessage(w, r, http.StatusNotFound, message{Heading: "No such incident", Link: "/admin", LinkText: "Back to recent events"})
		return
	}
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	homes, err := a.d.Store.IncidentHomes(r.Context(), id)
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	v := incidentView{
		ID: id, Title: sum.Title, Status: sum.Status, Impact: sum.Impact, Updates: sum.Updates,
		Homes: sum.Homes, Acknowledged: sum.Acknowledged, Path: r.URL.Path,
		Unacknowledged: r.URL.Query().Get("filter") == "unacknowledged",
	}
	counts := make([]int, len(ackWithin))
	for _, h := range homes {
		row := homeRow{Key: strings.NewReplacer(":", "-", "/", "-").Replace(h.Home), Home: h.Home, Name: h.Name, Channels: strings.Join(h.Channels, ", ")}
		if row.Name == "" {
			row.Name = h.Home
		}
		if h.FirstToldAt != nil {
			row.FirstTold = a.datetime(*h.FirstToldAt)
		}
		for _, d := range h.Deliveries {
			switch d.State {
			case store.StateSent, store.StateDelivered:
				row.Delivered++
			case store.StateFailed, store.StateUndelivered:
				row.NotDelivered++
			}
		}
		if ack := h.Acknowledged; ack != nil {
			row.Acknowledged, row.AckAt, row.AckVia, row.AckBy, row.AckAction = true, a.datetime(ack.AcknowledgedAt), ack.Via, ack.By, ack.Action
			for i, within := range ackWithin {
				if ack.AcknowledgedAt.Sub(sum.FirstAt) <= within {
					counts[i]++
				}
			}
		}
		if v.Unacknowledged && row.Acknowledged {
			continue
		}
		v.Rows = append(v.Rows, row)
	}
	if sum.Acknowledged > 0 {
		for i, within := range ackWithin {
			v.OverTime = append(v.OverTime, ackBucket{Within: formatSpan(within), Count: counts[i]})
		}
	}
	a.render(w, r, http.StatusOK, "incident", sum.Title, v)
}

// formatSpan words a span as the page shows it ("5 minutes", "1 hour").
func formatSpan(d time.Duration) string {
	switch {
	case d == time.Hour:
		return "1 hour"
	case d > time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d minutes", int(d.Minutes()))
}
