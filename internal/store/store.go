// Package store is crier's PostgreSQL layer: the connection pool, the
// migrations and every SQL statement, grouped by table in this package's
// files. Callers get plain Go values and wrapped errors; sentinel errors say
// what went wrong in terms of the domain (ErrNotFound, ErrConflict).
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/crier-dev/crier/migrations"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	// ErrInUse means a row is still referenced (a component with
	// subscriptions or children).
	ErrInUse = errors.New("still in use")
)

// NotifyChannel is the LISTEN/NOTIFY channel on which fan-out announces new
// queued deliveries; the payload is the delivery channel ("email", "sms").
const NotifyChannel = "crier_deliveries"

// Store wraps a pgx pool.
type Store struct {
	pool  *pgxpool.Pool
	takes atomic.Uint64 // TakeToken calls, for forgetting full buckets
}

// Open connects to PostgreSQL and checks the connection.
func Open(ctx context.Context, url string, maxConns int32) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return &Store{pool: pool}, nil
}

// New wraps an existing pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool returns the underlying pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Migrate applies every pending migration and returns how many it applied.
func (s *Store) Migrate(ctx context.Context, log *slog.Logger) (int, error) {
	p, db, err := s.provider()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	results, err := p.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		if log != nil {
			log.InfoContext(ctx, "migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
		}
	}
	return len(results), nil
}

// MigrationsPending reports whether migrations remain to be applied.
func (s *Store) MigrationsPending(ctx context.Context) (bool, error) {
	p, db, err := s.provider()
	if err != nil {
		return false, err
	}
	defer db.Close()
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("check migrations: %w", err)
	}
	return pending, nil
}

func (s *Store) provider() (*goose.Provider, interface{ Close() error }, error) {
	db := stdlib.OpenDBFromPool(s.pool)
	// Several crier processes may start together: a session advisory lock
	// makes them apply migrations one at a time.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, db, nil
}

// IsUnavailable reports whether err means the database could not be reached
// or the connection broke (worth retrying later), as opposed to a statement
// the database refused.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08 connection exception, 57P01-03 admin shutdown / cannot
		// connect now, 53 insufficient resources, 40001/40P01 serialization.
		switch {
		case len(pgErr.Code) == 5 && (pgErr.Code[:2] == "08" || pgErr.Code[:2] == "53"),
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03",
			pgErr.Code == "40001", pgErr.Code == "40P01":
			return true
		}
		return false
	}
	return !errors.Is(err, pgx.ErrNoRows) && !errors.Is(err, ErrNotFound)
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}
