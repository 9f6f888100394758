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
		if err != nil {
			return a.refuseNotification(r, raw, src, http.StatusBadRequest, err)
		}
		ev, err := a.cfg.Alerts.Event(source, p)
		if err != nil {
			return a.refuseNotification(r, raw, src, http.StatusUnprocessableEntity, err)
		}
		return a.admitAndPublish(w, r, ev, src)
	}
}

// refuseNotification records a notification that cannot become an event
// with the rejected events, and answers status naming the field at fault.
func (a *API) refuseNotification(r *http.Request, raw []byte, src intake.Source, status int, err error) error {
	var verr *event.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	a.intake.Received(src)
	if rerr := a.intake.Reject(r.Context(), raw, "", src, verr); rerr != nil {
		a.d.Log.WarnContext(r.Context(), "record rejected notification", "source", src.Via, "error", rerr)
	}
	return fail(status, verr.Field, "%s", verr.Error())
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
