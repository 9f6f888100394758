package store

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// IncidentSummary is what GET /v1/incidents/{id} answers: the incident as
// its latest update says, and how far its homes were told and answered.
type IncidentSummary struct {
	IncidentID string    `json:"incident_id"`
	Kind       string    `json:"kind"`
	Title      string    `json:"title"`
	Status     string    `json:"status"`
	Impact     string    `json:"impact"` // the highest of its updates
	Updates    int       `json:"updates"`
	FirstAt    time.Time `json:"first_at"`
	LastAt     time.Time `json:"last_at"`
	// Deliveries counts the incident's deliveries by channel, then state.
	Deliveries   map[string]map[string]int64 `json:"deliveries"`
	Homes        int64                       `json:"homes"`
	Acknowledged int64                       `json:"acknowledged"`
}

// HomeReport is one home's part in an incident: when it was first told
// and how, what was delivered, and how it acknowledged.
type HomeReport struct {
	Home         string         `json:"home"`
	Name         string         `json:"name"`
	FirstToldAt  *time.Time     `json:"first_told_at"`
	Channels     []string       `json:"channels"`
	Deliveries   []HomeDelivery `json:"deliveries"`
	Acknowledged *Ack           `json:"acknowledgement"`
}

// HomeDelivery is one delivery to a home's contact, address masked by the
// caller.
type HomeDelivery struct {
	EventID      string     `json:"event_id"`
	SubscriberID int64      `json:"subscriber_id"`
	Channel      string     `json:"channel"`
	Address      string     `json:"address"`
	State        string     `json:"state"`
	SentAt       *time.Time `json:"sent_at,omitempty"`
}

// incidentDeliveries selects the incident's deliveries with their home:
// through each event's range of delivery ids (see 00006).
const incidentDeliveries = `
	SELECT d.event_id, d.subscriber_id, d.channel, d.address, d.state, d.sent_at,
	       coalesce(s.organisation_key, 'subscriber:' || d.subscriber_id) AS home,
	       coalesce(o.name, s.name, '') AS home_name
	FROM events e
	JOIN deliveries d ON d.id BETWEEN e.first_delivery_id AND e.last_delivery_id AND d.event_id = e.id
	LEFT JOIN subscribers s ON s.id = d.subscriber_id
	LEFT JOIN organisations o ON o.key = s.organisation_key
	WHERE e.incident_id = $1`

// IncidentSummary summarises an incident; ErrNotFound when it has no
// update.
func (s *Store) IncidentSummary(ctx context.Context, incidentID string) (IncidentSummary, error) {
	evs, err := s.IncidentEvents(ctx, incidentID)
	if err != nil {
		return IncidentSummary{}, err
	}
	if len(evs) == 0 {
		return IncidentSummary{}, fmt.Errorf("incident %q: %w", incidentID, ErrNotFound)
	}
	last := evs[len(evs)-1]
	sum := IncidentSummary{
		IncidentID: incidentID, Kind: last.Kind, Title: last.Title, Status: last.Status, Updates: len(evs),
		FirstAt: evs[0].OccurredAt, LastAt: last.OccurredAt, Deliveries: map[string]map[string]int64{},
	}
	rank := map[string]int{"none": 0, "minor": 1, "major": 2, "critical": 3}
	for _, e := range evs {
		if rank[e.Impact] >= rank[sum.Impact] {
			sum.Impact = e.Impact
		}
	}
	// One scan of the deliveries (the CTE, used twice, is computed once).
	rows, err := s.pool.Query(ctx, `
		WITH d AS (`+incidentDeliveries+`)
		SELECT channel, state, count(*), (SELECT count(DISTINCT home) FROM d) FROM d GROUP BY channel, state`, incidentID)
	if err != nil {
		return IncidentSummary{}, fmt.Errorf("summarise incident %q: %w", incidentID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var ch, st string
		var n int64
		if err := rows.Scan(&ch, &st, &n, &sum.Homes); err != nil {
			return IncidentSummary{}, fmt.Errorf("summarise incident %q: %w", incidentID, err)
		}
		if sum.Deliveries[ch] == nil {
			sum.Deliveries[ch] = map[string]int64{}
		}
		sum.Deliveries[ch][st] = n
	}
	if err := rows.Err(); err != nil {
		return IncidentSummary{}, fmt.Errorf("summarise incident %q: %w", incidentID, err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM acknowledgements WHERE incident_id = $1`, incidentID).Scan(&sum.Acknowledged); err != nil {
		return IncidentSummary{}, fmt.Errorf("summarise incident %q: %w", incidentID, err)
	}
	return sum, nil
}

// IncidentHomes reports, per home told of the incident (and per home that
// acknowledged it without being told, as the support desk may record),
// what it was told and how it acknowledged, by home.
func (s *Store) IncidentHomes(ctx context.Context, incidentID string) ([]HomeReport, error) {
	rows, err := s.pool.Query(ctx, incidentDeliveries+` ORDER BY home, d.sent_at NULLS LAST, d.id`, incidentID)
	if err != nil {
		return nil, fmt.Errorf("report homes of %q: %w", incidentID, err)
	}
	defer rows.Close()
	var out []HomeReport
	index := map[string]int{}
	for rows.Next() {
		var d HomeDelivery
		var home, name string
		if err := rows.Scan(&d.EventID, &d.SubscriberID, &d.Channel, &d.Address, &d.State, &d.SentAt, &home, &name); err != nil {
			return nil, fmt.Errorf("report homes of %q: %w", incidentID, err)
		}
		i, ok := index[home]
		if !ok {
			i = len(out)
			index[home] = i
			out = append(out, HomeReport{Home: home, Name: name, Channels: []string{}})
		}
		h := &out[i]
		h.Deliveries = append(h.Deliveries, d)
		if d.SentAt != nil && (d.State == StateSent || d.State == StateDelivered) {
			if h.FirstToldAt == nil || d.SentAt.Before(*h.FirstToldAt) {
				t := *d.SentAt
				h.FirstToldAt = &t
			}
			if !slices.Contains(h.Channels, d.Channel) {
				h.Channels = append(h.Channels, d.Channel)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report homes of %q: %w", incidentID, err)
	}
	ackRows, err := s.pool.Query(ctx, `
		SELECT a.incident_id, a.home, a.event_id, coalesce(a.subscriber_id, 0), a.via, a.by_name, a.action, a.note, a.acknowledged_at,
		       coalesce(o.name, '')
		FROM acknowledgements a LEFT JOIN organisations o ON o.key = a.home
		WHERE a.incident_id = $1`, incidentID)
	if err != nil {
		return nil, fmt.Errorf("report acknowledgements of %q: %w", incidentID, err)
	}
	defer ackRows.Close()
	for ackRows.Next() {
		var a Ack
		var name string
		if err := ackRows.Scan(&a.IncidentID, &a.Home, &a.EventID, &a.SubscriberID, &a.Via, &a.By, &a.Action, &a.Note, &a.AcknowledgedAt, &name); err != nil {
			return nil, fmt.Errorf("report acknowledgements of %q: %w", incidentID, err)
		}
		i, ok := index[a.Home]
		if !ok {
			i = len(out)
			index[a.Home] = i
			out = append(out, HomeReport{Home: a.Home, Name: name, Channels: []string{}, Deliveries: []HomeDelivery{}})
		}
		out[i].Acknowledged = &a
	}
	return out, ackRows.Err()
}
