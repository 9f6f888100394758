package store

// SQL for subscriber administration over HTTP (internal/httpapi): creating
// with channels switched off, partial updates, CSV import, self-service
// subscribing and confirming.

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoAddress means an update would leave a subscriber with no address
// or destination at all.
var ErrNoAddress = errors.New("a subscriber needs an email address, a phone number or a destination URL")

// channelColumns are, by channel (deliver.Channel*), the subscribers
// columns holding the address and the opt-out time. Column names in SQL
// come from here only.
var channelColumns = map[string]struct{ address, optedOut string }{
	"email":   {"email", "email_opted_out_at"},
	"sms":     {"phone", "sms_opted_out_at"},
	"webhook": {"webhook_url", "webhook_opted_out_at"},
	"teams":   {"teams_url", "teams_opted_out_at"},
	"slack":   {"slack_url", "slack_opted_out_at"},
}

func checkChannels(chs []string) error {
	for _, ch := range chs {
		if _, ok := channelColumns[ch]; !ok {
			return fmt.Errorf("unknown channel %q", ch)
		}
	}
	return nil
}

// isUnreachable reports a violation of subscribers_reachable: no address
// or destination would be left.
func isUnreachable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23514" && pgErr.ConstraintName == "subscribers_reachable"
}

// AddSubscriber is CreateSubscriber for administrators: in the same
// transaction it also opts the subscriber out of the channels in optOut
// (an address kept on file that must not be used).
func (s *Store) AddSubscriber(ctx context.Context, n NewSubscriber, optOut []string) (int64, error) {
	if err := checkChannels(optOut); err != nil {
		return 0, fmt.Errorf("add subscriber: %w", err)
	}
	var id int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if id, err = insertSubscriber(ctx, tx, n); err != nil {
			return err
		}
		if err := setSubscriptions(ctx, tx, id, n.Components); err != nil {
			return err
		}
		for _, ch := range optOut {
			if err := optOutTx(ctx, tx, id, ch); err != nil {
				return err
			}
		}
		return nil
	})
	return id, err
}

func insertSubscriber(ctx context.Context, tx pgx.Tx, n NewSubscriber) (int64, error) {
	org, err := organisationKey(ctx, tx, n.Organisation)
	if err != nil {
		return 0, err
	}
	if n.Role == "" {
		n.Role = RolePrimary
	}
	var id int64
	err = tx.QueryRow(ctx, `
		INSERT INTO subscribers (email, phone, name, organisation_key, role, email_confirmed_at, sms_confirmed_at,
		                         webhook_url, webhook_secret, teams_url, slack_url)
		VALUES (nullif($1, ''), nullif($2, ''), $3, $4, $11,
		        CASE WHEN $5 AND $1 <> '' THEN now() END,
		        CASE WHEN $6 AND $2 <> '' THEN now() END,
		        nullif($7, ''), CASE WHEN $7 <> '' THEN $8 END, nullif($9, ''), nullif($10, ''))
		RETURNING id`,
		n.Email, n.Phone, n.Name, org, n.ConfirmEmail, n.ConfirmSMS,
		n.WebhookURL, n.WebhookSecret, n.TeamsURL, n.SlackURL, n.Role).Scan(&id)
	switch {
	case isUniqueViolation(err):
		return 0, fmt.Errorf("create subscriber: address: %w", ErrConflict)
	case isUnreachable(err):
		return 0, fmt.Errorf("create subscriber: %w", ErrNoAddress)
	case err != nil:
		return 0, fmt.Errorf("create subscriber: %w", err)
	}
	return id, nil
}

// optOutTx opts a subscriber out of a channel and suppresses their queued
// deliveries on it; it reports ErrNotFound for an unknown subscriber.
func optOutTx(ctx context.Context, tx pgx.Tx, id int64, channel string) error {
	c, ok := channelColumns[channel]
	if !ok {
		return fmt.Errorf("opt out: unknown channel %q", channel)
	}
	tag, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE subscribers SET %[1]s = coalesce(%[1]s, now()), updated_at = now() WHERE id = $1`, c.optedOut), id)
	if err != nil {
		return fmt.Errorf("opt out: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("subscriber %d: %w", id, ErrNotFound)
	}
	return suppressQueued(ctx, tx, id, channel)
}

// SubscriberUpdate is a partial update of a subscriber: nil fields stay as
// they are.
type SubscriberUpdate struct {
	// Email and Phone replace an address; "" removes it. A changed address
	// starts unconfirmed and not opted out (unless ConfirmEmail or
	// ConfirmSMS). Phone must be E.164.
	Email, Phone       *string
	Name, Organisation *string
	// Role is RolePrimary or RoleEscalation.
	Role *string
	// Components replaces the components followed.
	Components *[]string
	// OptIn clears the opt-out of these channels (an administrator acting
	// for the subscriber); OptOut opts out of them and suppresses their
	// queued deliveries.
	OptIn, OptOut []string
	// ConfirmEmail and ConfirmSMS mark the channel's (new) address as
	// confirmed.
	ConfirmEmail, ConfirmSMS bool
	// WebhookURL, TeamsURL and SlackURL replace a destination; "" removes
	// it. A changed destination starts switched on. WebhookSecret is the
	// secret of a new or changed webhook URL (kept when nil).
	WebhookURL, TeamsURL, SlackURL *string
	WebhookSecret                  *string
}

// UpdateSubscriber applies u in one transaction. It returns ErrNotFound for
// an unknown subscriber or component, ErrConflict when an address belongs to
// another subscriber and ErrNoAddress when no address would be left.
func (s *Store) UpdateSubscriber(ctx context.Context, id int64, u SubscriberUpdate) error {
	if err := checkChannels(append(append([]string(nil), u.OptIn...), u.OptOut...)); err != nil {
		return fmt.Errorf("update subscriber %d: %w", id, err)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var org *string
		if u.Organisation != nil {
			var err error
			if org, err = organisationKey(ctx, tx, *u.Organisation); err != nil {
				return err
			}
		}
		// In SET, column names are the old values.
		tag, err := tx.Exec(ctx, `
			UPDATE subscribers SET
				email = CASE WHEN $2::text IS NULL THEN email ELSE nullif($2, '') END,
				email_confirmed_at = CASE WHEN $2::text IS NOT NULL AND lower(coalesce(email, '')) <> lower($2)
				                          THEN NULL ELSE email_confirmed_at END,
				email_opted_out_at = CASE WHEN $2::text IS NOT NULL AND lower(coalesce(email, '')) <> lower($2)
				                          THEN NULL ELSE email_opted_out_at END,
				phone = CASE WHEN $3::text IS NULL THEN phone ELSE nullif($3, '') END,
				sms_confirmed_at = CASE WHEN $3::text IS NOT NULL AND coalesce(phone, '') <> $3
				                        THEN NULL ELSE sms_confirmed_at END,
				sms_opted_out_at = CASE WHEN $3::text IS NOT NULL AND coalesce(phone, '') <> $3
				                        THEN NULL ELSE sms_opted_out_at END,
				name = coalesce($4, name),
				organisation_key = CASE WHEN $5::boolean THEN $10 ELSE organisation_key END,
				role = coalesce($11, role),
				webhook_url = CASE WHEN $6::text IS NULL THEN webhook_url ELSE nullif($6, '') END,
				webhook_secret = CASE WHEN $6::text IS NULL THEN webhook_secret WHEN $6 = '' THEN NULL
				                      ELSE coalesce($9, webhook_secret) END,
				webhook_opted_out_at = CASE WHEN $6::text IS NOT NULL AND coalesce(webhook_url, '') <> $6
				                            THEN NULL ELSE webhook_opted_out_at END,
				teams_url = CASE WHEN $7::text IS NULL THEN teams_url ELSE nullif($7, '') END,
				teams_opted_out_at = CASE WHEN $7::text IS NOT NULL AND coalesce(teams_url, '') <> $7
				                          THEN NULL ELSE teams_opted_out_at END,
				slack_url = CASE WHEN $8::text IS NULL THEN slack_url ELSE nullif($8, '') END,
				slack_opted_out_at = CASE WHEN $8::text IS NOT NULL AND coalesce(slack_url, '') <> $8
				                          THEN NULL ELSE slack_opted_out_at END,
				updated_at = now()
			WHERE id = $1`, id, u.Email, u.Phone, u.Name, u.Organisation != nil, u.WebhookURL, u.TeamsURL, u.SlackURL, u.WebhookSecret, org, u.Role)
		switch {
		case isUniqueViolation(err):
			return fmt.Errorf("update subscriber %d: address: %w", id, ErrConflict)
		case isUnreachable(err):
			return fmt.Errorf("update subscriber %d: %w", id, ErrNoAddress)
		case err != nil:
			return fmt.Errorf("update subscriber %d: %w", id, err)
		case tag.RowsAffected() == 0:
			return fmt.Errorf("subscriber %d: %w", id, ErrNotFound)
		}
		if u.Components != nil {
			if err := setSubscriptions(ctx, tx, id, *u.Components); err != nil {
				return err
			}
		}
		for _, ch := range u.OptOut {
			if err := optOutTx(ctx, tx, id, ch); err != nil {
				return err
			}
		}
		for _, ch := range u.OptIn {
			if err := optInTx(ctx, tx, id, ch); err != nil {
				return err
			}
		}
		if u.ConfirmEmail || u.ConfirmSMS {
			_, err := tx.Exec(ctx, `
				UPDATE subscribers SET
					email_confirmed_at = CASE WHEN $2 AND email IS NOT NULL THEN coalesce(email_confirmed_at, now()) ELSE email_confirmed_at END,
					sms_confirmed_at   = CASE WHEN $3 AND phone IS NOT NULL THEN coalesce(sms_confirmed_at, now())   ELSE sms_confirmed_at END
				WHERE id = $1`, id, u.ConfirmEmail, u.ConfirmSMS)
			if err != nil {
				return fmt.Errorf("update subscriber %d: confirm: %w", id, err)
			}
		}
		return nil
	})
}

func optInTx(ctx context.Context, tx pgx.Tx, id int64, channel string) error {
	c, ok := channelColumns[channel]
	if !ok {
		return fmt.Errorf("opt in: unknown channel %q", channel)
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE subscribers SET %s = NULL, updated_at = now() WHERE id = $1`, c.optedOut), id)
	if err != nil {
		return fmt.Errorf("opt in: %w", err)
	}
	return nil
}

// ErrNotConfirmed means a channel cannot be switched on because its address
// was never confirmed (double opt-in comes first).
var ErrNotConfirmed = errors.New("address not confirmed")

// OptIn switches a channel back on for a subscriber who opted out of it,
// from their own management page. Only a confirmed address can be switched
// on (ErrNotConfirmed otherwise).
func (s *Store) OptIn(ctx context.Context, id int64, channel string) error {
	c, ok := channelColumns[channel]
	if !ok {
		return fmt.Errorf("opt in: unknown channel %q", channel)
	}
	confirmed := "true"
	switch channel {
	case "email":
		confirmed = "email_confirmed_at IS NOT NULL"
	case "sms":
		confirmed = "sms_confirmed_at IS NOT NULL"
	}
	tag, err := s.pool.Exec(ctx, fmt.Sprintf(`
		UPDATE subscribers SET %s = NULL, updated_at = now()
		WHERE id = $1 AND %s IS NOT NULL AND %s`, c.optedOut, c.address, confirmed), id)
	if err != nil {
		return fmt.Errorf("opt in: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("opt in subscriber %d to %s: %w", id, channel, ErrNotConfirmed)
	}
	return nil
}

// ImportSubscriber creates a subscriber, or updates the one that already
// holds n's email address or phone number (or, for a row with neither, one
// of its destination URLs): its name, organisation and components are
// replaced, its addresses, destinations and channels left as they are. It
// reports whether it created one. ErrConflict means the email address and
// the phone number belong to two different subscribers; ErrNotFound means
// a component does not exist.
func (s *Store) ImportSubscriber(ctx context.Context, n NewSubscriber) (created bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT id FROM subscribers
			WHERE ($1 <> '' AND lower(email) = lower($1)) OR ($2 <> '' AND phone = $2)
			   OR ($1 = '' AND $2 = '' AND (($3 <> '' AND webhook_url = $3) OR ($4 <> '' AND teams_url = $4) OR ($5 <> '' AND slack_url = $5)))
			ORDER BY id FOR UPDATE`, n.Email, n.Phone, n.WebhookURL, n.TeamsURL, n.SlackURL)
		if err != nil {
			return fmt.Errorf("import subscriber: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("import subscriber: %w", err)
		}
		switch len(ids) {
		case 0:
			id, err := insertSubscriber(ctx, tx, n)
			if err != nil {
				return err
			}
			created = true
			return setSubscriptions(ctx, tx, id, n.Components)
		case 1:
			org, err := organisationKey(ctx, tx, n.Organisation)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE subscribers SET name = $2, organisation_key = $3, role = coalesce(nullif($4, ''), role), updated_at = now() WHERE id = $1`,
				ids[0], n.Name, org, n.Role); err != nil {
				return fmt.Errorf("import subscriber: %w", err)
			}
			return setSubscriptions(ctx, tx, ids[0], n.Components)
		default:
			return fmt.Errorf("import subscriber: the email address and the phone number belong to different subscribers: %w", ErrConflict)
		}
	})
	return created, err
}

// SelfSubscribed says which subscriber each address of a self-service
// subscribe request belongs to.
type SelfSubscribed struct {
	// EmailSubscriber and PhoneSubscriber hold the address given (0 when
	// none was given). They are the same subscriber when both addresses
	// were new.
	EmailSubscriber int64
	PhoneSubscriber int64
	// EmailNew and PhoneNew report that the address was not known before
	// this request.
	EmailNew, PhoneNew bool
	// EmailActive reports that the email address was already confirmed and
	// not opted out.
	EmailActive bool
}

// SelfSubscribe records a subscribe request from the public page. Addresses
// not known yet get one new subscriber holding them, unconfirmed, following
// n.Components; an address that is already known is left as it is (the
// request proves nothing about its owner until it is confirmed). Nothing in
// the result is meant to be shown to the requester.
func (s *Store) SelfSubscribe(ctx context.Context, n NewSubscriber) (SelfSubscribed, error) {
	n.ConfirmEmail, n.ConfirmSMS = false, false
	var res SelfSubscribed
	var err error
	// Two requests for the same new address may race: the loser's insert
	// violates the unique index, and a second pass finds the address.
	for range 3 {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			res = SelfSubscribed{}
			if n.Email != "" {
				err := tx.QueryRow(ctx, `
					SELECT id, email_confirmed_at IS NOT NULL AND email_opted_out_at IS NULL
					FROM subscribers WHERE lower(email) = lower($1)`, n.Email).Scan(&res.EmailSubscriber, &res.EmailActive)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("self-subscribe: %w", err)
				}
			}
			if n.Phone != "" {
				err := tx.QueryRow(ctx, `SELECT id FROM subscribers WHERE phone = $1`, n.Phone).Scan(&res.PhoneSubscriber)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("self-subscribe: %w", err)
				}
			}
			fresh := n
			res.EmailNew = n.Email != "" && res.EmailSubscriber == 0
			res.PhoneNew = n.Phone != "" && res.PhoneSubscriber == 0
			if !res.EmailNew {
				fresh.Email = ""
			}
			if !res.PhoneNew {
				fresh.Phone = ""
			}
			if fresh.Email == "" && fresh.Phone == "" {
				return nil
			}
			id, err := insertSubscriber(ctx, tx, fresh)
			if err != nil {
				return err
			}
			if res.EmailNew {
				res.EmailSubscriber = id
			}
			if res.PhoneNew {
				res.PhoneSubscriber = id
			}
			return setSubscriptions(ctx, tx, id, n.Components)
		})
		if !errors.Is(err, ErrConflict) {
			break
		}
	}
	return res, err
}

// ConfirmEmail marks a subscriber's email address confirmed and clears an
// opt-out of email (the owner asked to subscribe again), provided the
// subscriber's address still is addr. ErrNotFound otherwise.
func (s *Store) ConfirmEmail(ctx context.Context, id int64, addr string) error {
	tag, err := s.pool.Exec(ctx, `
		UPDATE subscribers SET email_confirmed_at = coalesce(email_confirmed_at, now()),
		       email_opted_out_at = NULL, updated_at = now()
		WHERE id = $1 AND lower(email) = lower($2)`, id, addr)
	if err != nil {
		return fmt.Errorf("confirm email of subscriber %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("confirm email of subscriber %d: %w", id, ErrNotFound)
	}
	return nil
}
