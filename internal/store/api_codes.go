package store

// SQL for the codes texted to confirm a mobile number (table sms_codes).

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reasons a confirmation code is refused. A number without a pending code
// is ErrNotFound.
var (
	ErrCodeWrong   = errors.New("confirmation code does not match")
	ErrCodeExpired = errors.New("confirmation code has expired")
	// ErrCodeSpent means too many wrong codes were tried: the code is void
	// and a new one must be asked for.
	ErrCodeSpent = errors.New("confirmation code tried too often")
)

// PutSMSCode stores the hash of a new confirmation code for phone, owned by
// subscriber id, valid for ttl. It replaces any pending code for the number
// (with a fresh count of attempts) and clears out expired codes.
func (s *Store) PutSMSCode(ctx context.Context, id int64, phone string, hash []byte, ttl time.Duration) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM sms_codes WHERE expires_at < now()`); err != nil {
			return fmt.Errorf("clear expired codes: %w", err)
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO sms_codes (phone, subscriber_id, code_hash, expires_at)
			VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
			ON CONFLICT (phone) DO UPDATE SET subscriber_id = EXCLUDED.subscriber_id, code_hash = EXCLUDED.code_hash,
				attempts = 0, expires_at = EXCLUDED.expires_at, created_at = now()`,
			phone, id, hash, ttl.Milliseconds())
		if isForeignKeyViolation(err) {
			return fmt.Errorf("store code: subscriber %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store code: %w", err)
		}
		return nil
	})
}

// CheckSMSCode compares hash with the pending code of phone. A match spends
// the code and confirms the number (clearing an opt-out: its owner asked to
// subscribe again) and returns the subscriber's id. A mismatch counts an
// attempt (ErrCodeWrong); the attempt that reaches maxAttempts voids the
// code, as does expiry (ErrCodeSpent, ErrCodeExpired). A number without a
// pending code is ErrNotFound.
func (s *Store) CheckSMSCode(ctx context.Context, phone string, hash []byte, maxAttempts int) (int64, error) {
	var id int64
	var verdict error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		verdict = nil
		var stored []byte
		var attempts int
		var expired bool
		err := tx.QueryRow(ctx, `
			SELECT subscriber_id, code_hash, attempts, expires_at <= now()
			FROM sms_codes WHERE phone = $1 FOR UPDATE`, phone).Scan(&id, &stored, &attempts, &expired)
		if errors.Is(err, pgx.ErrNoRows) {
			verdict = ErrNotFound
			return nil
		}
		if err != nil {
			return err
		}
		match := subtle.ConstantTimeCompare(stored, hash) == 1
		switch {
		case expired:
			verdict = ErrCodeExpired
		case attempts >= maxAttempts:
			verdict = ErrCodeSpent
		case !match && attempts+1 >= maxAttempts:
			verdict = ErrCodeSpent
		case !match:
			verdict = ErrCodeWrong
			_, err := tx.Exec(ctx, `UPDATE sms_codes SET attempts = attempts + 1 WHERE phone = $1`, phone)
			return err
		}
		// Spent one way or the other.
		if _, err := tx.Exec(ctx, `DELETE FROM sms_codes WHERE phone = $1`, phone); err != nil {
			return err
		}
		if verdict != nil {
			return nil
		}
		tag, err := tx.Exec(ctx, `
			UPDATE subscribers SET sms_confirmed_at = coalesce(sms_confirmed_at, now()),
			       sms_opted_out_at = NULL, updated_at = now()
			WHERE id = $1 AND phone = $2`, id, phone)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			verdict = ErrNotFound
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("check confirmation code: %w", err)
	}
	if verdict != nil {
		return 0, fmt.Errorf("check confirmation code: %w", verdict)
	}
	return id, nil
}
