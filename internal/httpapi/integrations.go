package httpapi

import (
	"errors"
	"net/http"

	"github.com/crier-dev/crier/internal/alerting"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/intake"
)

// postAlerts is POST /v1/integrations/{source}: a monitoring system's
// notification (package alerting) becomes an event, admitted and published
// as POST /v1/events would. A notification that cannot become an event is
// refused with 422 naming the field, and recorded with the rejected events.
func (a *API) postAlerts(source string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := requireMediaType(r, "application/json"); err != nil {
			return err
		}
		raw, err := readBody(w, r, event.MaxPayloadBytes)
		if err != nil {
			return err
		}
		src := intake.Source{Via: source}
		if err := wellFormedObject(raw); err != nil {
			return err
		}
		p, err := alerting.Decode(raw)
		if err == nil {
			var ev event.Event
			if ev, err = a.cfg.Alerts.Event(source, p); err == nil {
				return a.admitAndPublish(w, r, ev, src)
			}
		}
		var ae *alerting.Error
		if !errors.As(err, &ae) {
			return err
		}
		a.intake.Received(src)
		if rerr := a.intake.Reject(r.Context(), raw, "", src, &event.ValidationError{Field: ae.Field, Reason: ae.Reason}); rerr != nil {
			a.d.Log.WarnContext(r.Context(), "record rejected notification", "source", source, "error", rerr)
		}
		status := http.StatusUnprocessableEntity
		if ae.Field == "payload" {
			status = http.StatusBadRequest
		}
		return fail(status, ae.Field, "%s", ae.Error())
	}
}

// admitAndPublish admits ev as the fan-out consumer will (its components
// must exist) and publishes it.
func (a *API) admitAndPublish(w http.ResponseWriter, r *http.Request, ev event.Event, src intake.Source) error {
	raw, err := event.Encode(ev)
	if err != nil {
		return err
	}
	if ev, err = a.admit(r, raw, src); err != nil {
		return err
	}
	return a.publish(w, r, ev, raw)
}
