package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Subscriber is a person who is told about incidents.
type Subscriber struct {
	ID    int64  `json:"id"`
	Email string `json:"email,omitempty"`
	Phone string `json:"phone,omitempty"`
	Name  string `json:"name"`
	// Organisation is the key of the subscriber's home ("" for none: a
	// home of one), and Role its part there (RolePrimary, RoleEscalation).
	Organisation     string     `json:"organisation"`
	Role             string     `json:"role"`
	EmailConfirmedAt *time.Time `json:"email_confirmed_at,omitempty"`
	EmailOptedOutAt  *time.Time `json:"email_opted_out_at,omitempty"`
	SMSConfirmedAt   *time.Time `json:"sms_confirmed_at,omitempty"`
	SMSOptedOutAt    *time.Time `json:"sms_opted_out_at,omitempty"`
	// WebhookURL, TeamsURL and SlackURL are the subscriber's destinations
	// (webhook, teams and slack channels); each *OptedOutAt is when it was
	// switched off (by an administrator, or by a 410 Gone answer).
	WebhookURL        string     `json:"webhook_url,omitempty"`
	WebhookOptedOutAt *time.Time `json:"webhook_opted_out_at,omitempty"`
	TeamsURL          string     `json:"teams_url,omitempty"`
	TeamsOptedOutAt   *time.Time `json:"teams_opted_out_at,omitempty"`
	SlackURL          string     `json:"slack_url,omitempty"`
	SlackOptedOutAt   *time.Time `json:"slack_opted_out_at,omitempty"`
	Components        []string   `json:"components"`
	CreatedAt         time.Time  `json:"created_at"`
	// WebhookSecret is set only in the answer that made it (a new or
	// changed webhook_url): it is shown once, never read back.
	WebhookSecret string `json:"webhook_secret,omitempty"`
}

// NewSubscriber is the input of CreateSubscriber. Addresses must already be
// normalised (phone in E.164). ConfirmEmail and ConfirmSMS mark the channel
// as confirmed at once (an administrator vouching for the address); without
// them the channel waits for double opt-in.
type NewSubscriber struct {
	Email string
	Phone string
	Name  string
	// Organisation is a key, or the name of an organisation (made when
	// none has it); Role is RolePrimary (default) or RoleEscalation.
	Organisation string
	Role         string
	Components   []string
	ConfirmEmail bool
	ConfirmSMS   bool
	// WebhookURL (with its WebhookSecret), TeamsURL and SlackURL are
	// destinations, switched on at once.
	WebhookURL, WebhookSecret, TeamsURL, SlackURL string
}

// CreateSubscriber inserts a subscriber and their subscriptions. It returns
// ErrConflict when the email or phone belongs to another subscriber,
// ErrNoAddress when it has neither, and ErrNotFound when a component does
// not exist.
func (s *Store) CreateSubscriber(ctx context.Context, n NewSubscriber) (int64, error) {
	var id int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) (err error) {
		if id, err = insertSubscriber(ctx, tx, n); err != nil {
			return err
		}
		return setSubscriptions(ctx, tx, id, n.Components)
	})
	return id, err
}

// SetSubscriptions replaces the components a subscriber follows.
func (s *Store) SetSubscriptions(ctx context.Context, id int64, components []string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return setSubscriptions(ctx, tx, id, components)
	})
}

func setSubscriptions(ctx context.Context, tx pgx.Tx, id int64, components []string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM subscriptions WHERE subscriber_id = $1 AND NOT component_key = ANY($2)`, id, components); err != nil {
		return fmt.Errorf("set subscriptions: %w", err)
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO subscriptions (component_key, subscriber_id)
		SELECT k, $1 FROM unnest($2::text[]) AS k
		ON CONFLICT DO NOTHING`, id, components)
	if isForeignKeyViolation(err) {
		return fmt.Errorf("set subscriptions: unknown component or subscriber: %w", ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("set subscriptions: %w", err)
	}
	_ = tag
	return nil
}

const subscriberColumns = `
	s.id, coalesce(s.email, ''), coalesce(s.phone, ''), s.name, coalesce(s.organisation_key, ''), s.role,
	s.email_confirmed_at, s.email_opted_out_at, s.sms_confirmed_at, s.sms_opted_out_at,
	coalesce(s.webhook_url, ''), s.webhook_opted_out_at, coalesce(s.teams_url, ''), s.teams_opted_out_at,
	coalesce(s.slack_url, ''), s.slack_opted_out_at,
	coalesce((SELECT array_agg(component_key ORDER BY component_key) FROM subscriptions WHERE subscriber_id = s.id), '{}'),
	s.created_at`

func scanSubscriber(row pgx.Row) (Subscriber, error) {
	var sub Subscriber
	err := row.Scan(&sub.ID, &sub.Email, &sub.Phone, &sub.Name, &sub.Organisation, &sub.Role,
		&sub.EmailConfirmedAt, &sub.EmailOptedOutAt, &sub.SMSConfirmedAt, &sub.SMSOptedOutAt,
		&sub.WebhookURL, &sub.WebhookOptedOutAt, &sub.TeamsURL, &sub.TeamsOptedOutAt, &sub.SlackURL, &sub.SlackOptedOutAt,
		&sub.Components, &sub.CreatedAt)
	return sub, err
}

// GetSubscriber returns one subscriber with their components.
func (s *Store) GetSubscriber(ctx context.Context, id int64) (Subscriber, error) {
	sub, err := scanSubscriber(s.pool.QueryRow(ctx, `SELECT `+subscriberColumns+` FROM subscribers s WHERE s.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Subscriber{}, fmt.Errorf("subscriber %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Subscriber{}, fmt.Errorf("get subscriber %d: %w", id, err)
	}
	return sub, nil
}

// ListSubscribers returns subscribers ordered by id, after the given id, at
// most limit of them.
func (s *Store) ListSubscribers(ctx context.Context, afterID int64, limit int) ([]Subscriber, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+subscriberColumns+` FROM subscribers s WHERE s.id > $1 ORDER BY s.id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list subscribers: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscriber, error) { return scanSubscriber(r) })
	if err != nil {
		return nil, fmt.Errorf("list subscribers: %w", err)
	}
	return out, nil
}

// DeleteSubscriber removes a subscriber, their subscriptions and their
// deliveries (personal data is erased, not kept for audit).
func (s *Store) DeleteSubscriber(ctx context.Context, id int64) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Wait for fan-outs in progress (they hold this lock shared) so none
		// can commit deliveries for the subscriber after they are deleted.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, fanOutLock); err != nil {
			return fmt.Errorf("delete subscriber %d: %w", id, err)
		}
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM subscribers WHERE id = $1 FOR UPDATE`, id).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("subscriber %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("delete subscriber %d: %w", id, err)
		}
		_, err = tx.Exec(ctx, `
			WITH d AS (DELETE FROM deliveries WHERE subscriber_id = $1 RETURNING id)
			DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM d)`, id)
		if err != nil {
			return fmt.Errorf("delete subscriber %d: deliveries: %w", id, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM subscribers WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete subscriber %d: %w", id, err)
		}
		return nil
	})
}

// OptOut records that a subscriber no longer wants the channel and
// suppresses their queued deliveries on it.
func (s *Store) OptOut(ctx context.Context, id int64, channel string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return optOutTx(ctx, tx, id, channel) })
}

func suppressQueued(ctx context.Context, tx pgx.Tx, id int64, channel string) error {
	_, err := tx.Exec(ctx, `
		UPDATE deliveries SET state = 'suppressed', next_attempt_at = NULL, updated_at = now(),
		       last_error = 'recipient opted out'
		WHERE subscriber_id = $1 AND channel = $2 AND state = 'queued'`, id, channel)
	if err != nil {
		return fmt.Errorf("suppress queued deliveries: %w", err)
	}
	return nil
}

// WebhookSecret returns the signing secret of a subscriber's webhook
// destination ("" when it has none).
func (s *Store) WebhookSecret(ctx context.Context, id int64) (string, error) {
	var secret *string
	err := s.pool.QueryRow(ctx, `SELECT webhook_secret FROM subscribers WHERE id = $1`, id).Scan(&secret)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("subscriber %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("webhook secret of subscriber %d: %w", id, err)
	}
	if secret == nil {
		return "", nil
	}
	return *secret, nil
}

// OptOutPhone opts every subscriber with this E.164 number out of SMS and
// suppresses their queued texts. It returns how many subscribers changed.
func (s *Store) OptOutPhone(ctx context.Context, phone string) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE subscribers SET sms_opted_out_at = now(), updated_at = now()
			WHERE phone = $1 AND sms_opted_out_at IS NULL`, phone)
		if err != nil {
			return fmt.Errorf("opt out phone: %w", err)
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `
			UPDATE deliveries SET state = 'suppressed', next_attempt_at = NULL, updated_at = now(),
			       last_error = 'recipient opted out'
			WHERE channel = 'sms' AND state = 'queued'
			  AND subscriber_id IN (SELECT id FROM subscribers WHERE phone = $1)`, phone)
		if err != nil {
			return fmt.Errorf("suppress queued texts: %w", err)
		}
		return nil
	})
	return n, err
}

// OptInPhone clears the SMS opt-out of subscribers with this number.
func (s *Store) OptInPhone(ctx context.Context, phone string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE subscribers SET sms_opted_out_at = NULL, updated_at = now()
		WHERE phone = $1 AND sms_opted_out_at IS NOT NULL`, phone)
	if err != nil {
		return 0, fmt.Errorf("opt in phone: %w", err)
	}
	return tag.RowsAffected(), nil
}
