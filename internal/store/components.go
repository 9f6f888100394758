package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Component is one entry of the catalog tree.
type Component struct {
	Key         string `json:"key"`
	Parent      string `json:"parent,omitempty"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// Guidance is what to do now (the first message of an incident),
	// Recovery what to do when it is back (the resolution), Actions the
	// short choices offered when a home acknowledges.
	Guidance  string    `json:"guidance"`
	Recovery  string    `json:"recovery"`
	Actions   []string  `json:"actions"`
	CreatedAt time.Time `json:"created_at"`
}

// NearestWith returns the component of key, or else of its nearest
// ancestor, for which has is true: a subscriber of Sync Pod A gets Atlas
// Sync's runbook unless the pod has its own.
func NearestWith(byKey map[string]Component, key string, has func(Component) bool) (Component, bool) {
	for k := key; k != ""; k = ParentKey(k) {
		if c, ok := byKey[k]; ok && has(c) {
			return c, true
		}
	}
	return Component{}, false
}

// ParentKey returns the key of the parent of key ("" for a root).
func ParentKey(key string) string {
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		return key[:i]
	}
	return ""
}

// PutComponent creates or updates a component. Its parent must exist.
func (s *Store) PutComponent(ctx context.Context, c Component) (created bool, err error) {
	var parent *string
	if p := ParentKey(c.Key); p != "" {
		parent = &p
	}
	actions := c.Actions
	if actions == nil {
		actions = []string{}
	}
	err = s.pool.QueryRow(ctx, `
		INSERT INTO components (key, parent_key, name, description, guidance, recovery, actions)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (key) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,
			guidance = EXCLUDED.guidance, recovery = EXCLUDED.recovery, actions = EXCLUDED.actions
		RETURNING xmax = 0`, c.Key, parent, c.Name, c.Description, c.Guidance, c.Recovery, actions).Scan(&created)
	if isForeignKeyViolation(err) {
		return false, fmt.Errorf("put component %q: parent %q: %w", c.Key, *parent, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("put component %q: %w", c.Key, err)
	}
	return created, nil
}

// ListComponents returns the catalog ordered by key (parents before children).
func (s *Store) ListComponents(ctx context.Context) ([]Component, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT key, coalesce(parent_key, ''), name, description, guidance, recovery, actions, created_at
		FROM components ORDER BY key COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("list components: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Component, error) {
		var c Component
		err := r.Scan(&c.Key, &c.Parent, &c.Name, &c.Description, &c.Guidance, &c.Recovery, &c.Actions, &c.CreatedAt)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("list components: %w", err)
	}
	return out, nil
}

// GetComponent returns one component.
func (s *Store) GetComponent(ctx context.Context, key string) (Component, error) {
	var c Component
	err := s.pool.QueryRow(ctx, `
		SELECT key, coalesce(parent_key, ''), name, description, guidance, recovery, actions, created_at
		FROM components WHERE key = $1`, key).Scan(&c.Key, &c.Parent, &c.Name, &c.Description, &c.Guidance, &c.Recovery, &c.Actions, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Component{}, fmt.Errorf("component %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return Component{}, fmt.Errorf("get component %q: %w", key, err)
	}
	return c, nil
}

// DeleteComponent removes a component. Without force it refuses (ErrInUse)
// while the component has children or subscriptions; with force it removes
// the whole subtree and its subscriptions.
func (s *Store) DeleteComponent(ctx context.Context, key string, force bool) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var children, subs int
		err := tx.QueryRow(ctx, `
			SELECT (SELECT count(*) FROM components WHERE starts_with(key, $1 || '/')),
			       (SELECT count(*) FROM subscriptions WHERE component_key = $1 OR starts_with(component_key, $1 || '/'))`,
			key).Scan(&children, &subs)
		if err != nil {
			return fmt.Errorf("delete component %q: %w", key, err)
		}
		if !force && (children > 0 || subs > 0) {
			return fmt.Errorf("delete component %q: %d children and %d subscriptions: %w", key, children, subs, ErrInUse)
		}
		// Delete the deepest keys first so parent references never dangle.
		tag, err := tx.Exec(ctx, `
			WITH doomed AS (
				SELECT key FROM components WHERE key = $1 OR starts_with(key, $1 || '/')
			)
			DELETE FROM components WHERE key IN (SELECT key FROM doomed)`, key)
		if err != nil {
			return fmt.Errorf("delete component %q: %w", key, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("component %q: %w", key, ErrNotFound)
		}
		return nil
	})
}

// KnownComponents returns which of keys exist in the catalog.
func (s *Store) KnownComponents(ctx context.Context, keys []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT key FROM components WHERE key = ANY($1)`, keys)
	if err != nil {
		return nil, fmt.Errorf("look up components: %w", err)
	}
	known, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up components: %w", err)
	}
	m := make(map[string]bool, len(known))
	for _, k := range known {
		m[k] = true
	}
	return m, nil
}
