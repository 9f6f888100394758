package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Ways a home acknowledges.
const (
	AckViaLink  = "link"
	AckViaSMS   = "sms"
	AckViaVoice = "voice"
	AckViaAPI   = "api"
)

// Ack is a home's acknowledgement of an incident.
type Ack struct {
	IncidentID     string    `json:"incident_id"`
	Home           string    `json:"home"`
	EventID        string    `json:"event_id"`
	SubscriberID   int64     `json:"subscriber_id,omitempty"`
	Via            string    `json:"via"`
	By             string    `json:"by,omitempty"`
	Action         string    `json:"action,omitempty"`
	Note           string    `json:"note,omitempty"`
	AcknowledgedAt time.Time `json:"acknowledged_at"`
}

// Home is the key under which a subscriber's home acknowledges: its
// organisation, or the subscriber alone.
func Home(organisation string, subscriberID int64) string {
	if organisation != "" {
		return organisation
	}
	return "subscriber:" + strconv.FormatInt(subscriberID, 10)
}

// Acknowledge records a's acknowledgement unless the home has already
// acknowledged the incident; it returns the acknowledgement that counts
// (a, or the earlier one) and whether a is it.
func (s *Store) Acknowledge(ctx context.Context, a Ack) (Ack, bool, error) {
	var sub *int64
	if a.SubscriberID != 0 {
		sub = &a.SubscriberID
	}
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO acknowledgements (incident_id, home, event_id, subscriber_id, via, by_name, action, note)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
		a.IncidentID, a.Home, a.EventID, sub, a.Via, a.By, a.Action, a.Note)
	if err != nil {
		return Ack{}, false, fmt.Errorf("acknowledge %s for %s: %w", a.IncidentID, a.Home, err)
	}
	first := tag.RowsAffected() == 1
	if first {
		// Escalation deliveries still waiting are no longer needed.
		if err := s.SuppressEscalations(ctx, a.IncidentID, a.Home); err != nil {
			return Ack{}, false, err
		}
	}
	got, err := s.Acknowledgement(ctx, a.IncidentID, a.Home)
	return got, first, err
}

// Acknowledgement returns a home's acknowledgement of an incident, or
// ErrNotFound.
func (s *Store) Acknowledgement(ctx context.Context, incidentID, home string) (Ack, error) {
	var a Ack
	var sub *int64
	err := s.pool.QueryRow(ctx, `
		SELECT incident_id, home, event_id, subscriber_id, via, by_name, action, note, acknowledged_at
		FROM acknowledgements WHERE incident_id = $1 AND home = $2`, incidentID, home).
		Scan(&a.IncidentID, &a.Home, &a.EventID, &sub, &a.Via, &a.By, &a.Action, &a.Note, &a.AcknowledgedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Ack{}, fmt.Errorf("acknowledgement of %s by %s: %w", incidentID, home, ErrNotFound)
	}
	if err != nil {
		return Ack{}, fmt.Errorf("acknowledgement of %s by %s: %w", incidentID, home, err)
	}
	if sub != nil {
		a.SubscriberID = *sub
	}
	return a, nil
}

// AckTarget is what an acknowledgement link or reply refers to: the
// delivery's event and incident, and the recipient's home.
type AckTarget struct {
	DeliveryID   int64
	EventID      string
	IncidentID   string
	SubscriberID int64
	Home         string
}

// AckTargetOf returns the target of a delivery's acknowledgement link.
func (s *Store) AckTargetOf(ctx context.Context, deliveryID int64) (AckTarget, error) {
	t := AckTarget{DeliveryID: deliveryID}
	var org *string
	err := s.pool.QueryRow(ctx, `
		SELECT d.event_id, d.incident_id, d.subscriber_id, s.organisation_key
		FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE d.id = $1`, deliveryID).
		Scan(&t.EventID, &t.IncidentID, &t.SubscriberID, &org)
	if errors.Is(err, pgx.ErrNoRows) {
		return AckTarget{}, fmt.Errorf("delivery %d: %w", deliveryID, ErrNotFound)
	}
	if err != nil {
		return AckTarget{}, fmt.Errorf("delivery %d: %w", deliveryID, err)
	}
	t.Home = homeOf(org, t.SubscriberID)
	return t, nil
}

func homeOf(org *string, subscriberID int64) string {
	if org == nil {
		return Home("", subscriberID)
	}
	return Home(*org, subscriberID)
}

// LatestAwaitingAck returns the latest incident, among those texted to
// phone within the past week by an update that asked for acknowledgement
// (the incident's first update, with an impact in impacts, or a drill),
// that the
// phone's home has not acknowledged; ErrNotFound when there is none.
func (s *Store) LatestAwaitingAck(ctx context.Context, phone string, impacts []string) (AckTarget, error) {
	var t AckTarget
	var org *string
	err := s.pool.QueryRow(ctx, `
		SELECT d.id, d.event_id, d.incident_id, d.subscriber_id, s.organisation_key
		FROM subscribers s
		JOIN deliveries d ON d.subscriber_id = s.id AND d.channel = 'sms' -- deliveries_once's prefix
		JOIN events e ON e.id = d.event_id
		WHERE s.phone = $1 AND d.address = $1 AND d.state IN ('sent', 'delivered')
		  AND d.created_at > now() - interval '7 days'
		  AND (e.kind = 'drill' OR (e.kind = 'incident' AND e.impact = ANY($2)))
		  AND NOT EXISTS (SELECT 1 FROM events f WHERE f.incident_id = e.incident_id
		                  AND (f.occurred_at, f.seq) < (e.occurred_at, e.seq))
		  AND NOT EXISTS (SELECT 1 FROM acknowledgements a WHERE a.incident_id = d.incident_id
		                  AND a.home = coalesce(s.organisation_key, 'subscriber:' || s.id))
		ORDER BY d.id DESC LIMIT 1`, phone, impacts).
		Scan(&t.DeliveryID, &t.EventID, &t.IncidentID, &t.SubscriberID, &org)
	if errors.Is(err, pgx.ErrNoRows) {
		return AckTarget{}, fmt.Errorf("incident awaiting acknowledgement by %s: %w", "the number", ErrNotFound)
	}
	if err != nil {
		return AckTarget{}, fmt.Errorf("incident awaiting acknowledgement: %w", err)
	}
	t.Home = homeOf(org, t.SubscriberID)
	return t, nil
}
