package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Roles of a home's contacts.
const (
	RolePrimary    = "primary"    // told at once
	RoleEscalation = "escalation" // told when the home has not acknowledged in time
)

// Organisation is a care home: its contacts are the subscribers whose
// Organisation is its key.
type Organisation struct {
	Key       string    `json:"key"`
	Name      string    `json:"name"`
	Phone     string    `json:"phone,omitempty"`
	Contacts  int       `json:"contacts"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Contact is one of an organisation's subscribers.
type Contact struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"`
}

const organisationColumns = `o.key, o.name, coalesce(o.phone, ''),
	(SELECT count(*) FROM subscribers s WHERE s.organisation_key = o.key), o.created_at, o.updated_at`

func scanOrganisation(row pgx.Row) (Organisation, error) {
	var o Organisation
	err := row.Scan(&o.Key, &o.Name, &o.Phone, &o.Contacts, &o.CreatedAt, &o.UpdatedAt)
	return o, err
}

// CreateOrganisation stores a new organisation; ErrConflict when the key
// is taken. Phone must be E.164 or empty.
func (s *Store) CreateOrganisation(ctx context.Context, o Organisation) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO organisations (key, name, phone) VALUES ($1, $2, nullif($3, ''))`, o.Key, o.Name, o.Phone)
	if isUniqueViolation(err) {
		return fmt.Errorf("organisation %q: %w", o.Key, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create organisation %q: %w", o.Key, err)
	}
	return nil
}

// GetOrganisation returns one organisation.
func (s *Store) GetOrganisation(ctx context.Context, key string) (Organisation, error) {
	o, err := scanOrganisation(s.pool.QueryRow(ctx, `SELECT `+organisationColumns+` FROM organisations o WHERE o.key = $1`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return Organisation{}, fmt.Errorf("organisation %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return Organisation{}, fmt.Errorf("get organisation %q: %w", key, err)
	}
	return o, nil
}

// ListOrganisations returns every organisation by key.
func (s *Store) ListOrganisations(ctx context.Context) ([]Organisation, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+organisationColumns+` FROM organisations o ORDER BY o.key COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("list organisations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Organisation, error) { return scanOrganisation(r) })
	if err != nil {
		return nil, fmt.Errorf("list organisations: %w", err)
	}
	return out, nil
}

// OrganisationContacts returns an organisation's subscribers, primaries
// first.
func (s *Store) OrganisationContacts(ctx context.Context, key string) ([]Contact, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, name, role FROM subscribers WHERE organisation_key = $1
		ORDER BY role = 'escalation', id`, key)
	if err != nil {
		return nil, fmt.Errorf("contacts of %q: %w", key, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Contact])
	if err != nil {
		return nil, fmt.Errorf("contacts of %q: %w", key, err)
	}
	return out, nil
}

// UpdateOrganisation changes the name and phone given (nil: unchanged;
// phone "" removes it).
func (s *Store) UpdateOrganisation(ctx context.Context, key string, name, phone *string) error {
	tag, err := s.pool.Exec(ctx, `
		UPDATE organisations SET name = coalesce($2, name),
			phone = CASE WHEN $3::text IS NULL THEN phone ELSE nullif($3, '') END, updated_at = now()
		WHERE key = $1`, key, name, phone)
	if err != nil {
		return fmt.Errorf("update organisation %q: %w", key, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("organisation %q: %w", key, ErrNotFound)
	}
	return nil
}

// DeleteOrganisation deletes an organisation; its contacts stay, each a
// home of one.
func (s *Store) DeleteOrganisation(ctx context.Context, key string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM organisations WHERE key = $1`, key)
	if err != nil {
		return fmt.Errorf("delete organisation %q: %w", key, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("organisation %q: %w", key, ErrNotFound)
	}
	return nil
}

// Slug turns a name into an organisation key: lower case, runs of other
// characters as one "-" ("Oakview Care Home" -> oakview-care-home), at
// most 56 characters, "home" when nothing is left.
func Slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			if b.Len() >= 56 {
				break
			}
			continue
		}
		dash = true
	}
	if b.Len() == 0 {
		return "home"
	}
	return strings.TrimRight(b.String(), "-")
}

// organisationKey resolves what someone gave as a subscriber's
// organisation: the key of an existing organisation, or the name of one
// (any case), or else a new organisation of that name, keyed by its slug.
// "" is none (nil).
func organisationKey(ctx context.Context, tx pgx.Tx, v string) (*string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	var key string
	err := tx.QueryRow(ctx, `
		SELECT key FROM organisations WHERE key = $1 OR lower(name) = lower($1)
		ORDER BY key = $1 DESC, key LIMIT 1`, v).Scan(&key)
	if err == nil {
		return &key, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("look up organisation: %w", err)
	}
	base := Slug(v)
	for n := 1; n <= 100; n++ {
		key = base
		if n > 1 {
			key = base + "-" + strconv.Itoa(n)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO organisations (key, name) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, v)
		if err != nil {
			return nil, fmt.Errorf("create organisation %q: %w", key, err)
		}
		if tag.RowsAffected() == 1 {
			return &key, nil
		}
	}
	return nil, fmt.Errorf("create organisation for %q: every key up to %s-100 is taken", v, base)
}
