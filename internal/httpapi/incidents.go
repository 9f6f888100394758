package httpapi

import (
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/csvsafe"
	"github.com/crier-dev/crier/internal/store"
)

func (a *API) getIncident(w http.ResponseWriter, r *http.Request) error {
	sum, err := a.d.Store.IncidentSummary(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sum)
	return nil
}

// homeColumns are the columns of the per-home report as CSV.
var homeColumns = []string{"home", "name", "first_told_at", "channels", "delivered", "not_delivered",
	"acknowledged_at", "acknowledged_via", "acknowledged_by", "action", "note"}

// incidentOrganisations reports, per home, who was told when and on which
// channels, what was delivered (addresses masked) and how it acknowledged:
// JSON, or CSV with Accept: text/csv, for inspections and incident reviews.
func (a *API) incidentOrganisations(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if evs, err := a.d.Store.IncidentEvents(r.Context(), id); err != nil {
		return err
	} else if len(evs) == 0 {
		return fail(http.StatusNotFound, "", "no incident %q", id)
	}
	homes, err := a.d.Store.IncidentHomes(r.Context(), id)
	if err != nil {
		return err
	}
	for i := range homes {
		for j := range homes[i].Deliveries {
			d := &homes[i].Deliveries[j]
			d.Address = maskAddress(d.Channel, d.Address)
		}
		if homes[i].Deliveries == nil {
			homes[i].Deliveries = []store.HomeDelivery{}
		}
	}
	if homes == nil {
		homes = []store.HomeReport{}
	}
	if !wantsCSV(r) {
		writeJSON(w, http.StatusOK, map[string]any{"incident_id": id, "organisations": homes})
		return nil
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="incident-organisations.csv"`)
	h.Set("Cache-Control", "no-store")
	cw := csvsafe.NewWriter(w)
	_ = cw.Write(homeColumns)
	stamp := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, hr := range homes {
		delivered, notDelivered := 0, 0
		for _, d := range hr.Deliveries {
			switch d.State {
			case store.StateSent, store.StateDelivered:
				delivered++
			case store.StateFailed, store.StateUndelivered:
				notDelivered++
			}
		}
		row := []string{hr.Home, hr.Name, stamp(hr.FirstToldAt), strings.Join(hr.Channels, ";"),
			strconv.Itoa(delivered), strconv.Itoa(notDelivered), "", "", "", "", ""}
		if ack := hr.Acknowledged; ack != nil {
			at := ack.AcknowledgedAt
			row[6], row[7], row[8], row[9], row[10] = stamp(&at), ack.Via, ack.By, ack.Action, ack.Note
		}
		if err := cw.Write(row); err != nil {
			return nil // the client went away
		}
	}
	_ = cw.Flush()
	return nil
}

// wantsCSV reports whether the request's Accept header prefers text/csv.
func wantsCSV(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/csv" {
			return true
		}
	}
	return false
}
