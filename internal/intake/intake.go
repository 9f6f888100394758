// Package intake decides whether the bytes a publisher sent are an event
// crier accepts. It is the one place where an event is decoded, validated
// against the component catalog and, when invalid, recorded with the
// rejected events and counted: the fan-out consumer (events from
// JetStream) and the HTTP API (POST /v1/events) both call Admit, so an
// event is judged the same way whichever way it came.
package intake

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/metrics"
	"github.com/crier-dev/crier/internal/store"
)

// Source says where an event came from, as the rejected events and the
// metrics record it.
type Source struct {
	// Via is "http" or "stream", the source label of
	// crier_events_received_total.
	Via string
	// Subject is the event's stream subject (empty over HTTP).
	Subject string
	// StreamSeq is the event's sequence in the stream (0 over HTTP).
	StreamSeq uint64
}

// name is the source a rejected event records: "http" or
// "stream:<subject>".
func (s Source) name() string {
	if s.Subject == "" {
		return s.Via
	}
	return s.Via + ":" + s.Subject
}

// Intake admits events. It is safe for concurrent use.
type Intake struct {
	store   *store.Store
	metrics *metrics.Metrics
	now     func() time.Time
}

// New returns an Intake that looks components up in st and counts in m.
// now bounds how far in the future an event may lie (time.Now when nil).
func New(st *store.Store, m *metrics.Metrics, now func() time.Time) *Intake {
	if m == nil {
		m = metrics.New()
	}
	if now == nil {
		now = time.Now
	}
	return &Intake{store: st, metrics: m, now: now}
}

// Admit decodes raw and validates it, components included. It returns:
//
//   - the event and nil errors when it is valid;
//   - the *event.ValidationError that refuses it, after recording raw
//     with the rejected events and counting it; err is then nil, or the
//     failure to record it (the caller decides whether to try again);
//   - only err when the catalog could not be read: nothing is decided, and
//     the event should be tried again later.
func (in *Intake) Admit(ctx context.Context, raw []byte, src Source) (ev event.Event, verr *event.ValidationError, err error) {
	in.Received(src)
	ev, err = event.Decode(raw, in.now())
	if err == nil {
		var known map[string]bool
		if known, err = in.store.KnownComponents(ctx, ev.Components); err != nil {
			return event.Event{}, nil, fmt.Errorf("intake: %w", err)
		}
		err = event.CheckComponents(ev, func(k string) bool { return known[k] })
	}
	if err == nil {
		return ev, nil, nil
	}
	if !errors.As(err, &verr) {
		return event.Event{}, nil, fmt.Errorf("intake: %w", err)
	}
	// Decode succeeded when only the components are wrong: the id is known.
	return event.Event{}, verr, in.Reject(ctx, raw, ev.ID, src, verr)
}

// Received counts an event that arrived from src. Admit counts the events
// it is given; a caller that refuses one before calling Admit counts it
// with Received and records it with Reject.
func (in *Intake) Received(src Source) {
	in.metrics.EventsReceived.WithLabelValues(src.Via).Inc()
}

// Reject records raw as a rejected event (with eventID when it is known)
// and counts it, for a refusal decided before Admit could decode it (a body
// that is not a JSON object). The record is written even when ctx is
// cancelled: a refusal is never lost to a client that went away.
func (in *Intake) Reject(ctx context.Context, raw []byte, eventID string, src Source, verr *event.ValidationError) error {
	in.metrics.EventsRejected.WithLabelValues(event.MetricField(verr.Field)).Inc()
	if raw == nil {
		raw = []byte{} // the column is NOT NULL
	}
	err := in.store.Reject(context.WithoutCancel(ctx), store.Rejected{
		EventID:   eventID,
		Raw:       raw,
		Reason:    verr.Error(),
		Field:     verr.Field,
		Source:    src.name(),
		StreamSeq: src.StreamSeq,
	})
	if err != nil {
		return fmt.Errorf("intake: record rejected event: %w", err)
	}
	return nil
}
