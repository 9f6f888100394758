// Package devenv provides what `crier dev` runs around the ordinary crier
// service so that one command works on a machine with only Go installed:
//
//   - an embedded NATS server with JetStream (StartNATS), its data in a
//     local directory;
//   - a PostgreSQL database (StartPostgres): CRIER_DATABASE_URL when given,
//     else a database crier_dev on a local server answering on
//     127.0.0.1:5432, else a private cluster initialised and started from
//     the machine's PostgreSQL binaries, and stopped again on exit;
//   - the example catalog and subscribers (Seed);
//   - an in-memory outbox (Outbox) whose Senders capture every email and
//     text instead of handing it to a provider, and whose pages show them
//     under /dev/outbox.
//
// Start and Stop bring the NATS server and PostgreSQL up and down in order.
// The service itself is internal/serve, unchanged.
package devenv

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/store"
)

// DefaultDir is where crier dev keeps its state, relative to the working
// directory: nats/ for JetStream, pg/ for a private PostgreSQL cluster.
const DefaultDir = ".crier-dev"

// Config configures Start.
type Config struct {
	// Dir holds the state of the embedded NATS server (Dir/nats) and of a
	// private PostgreSQL cluster (Dir/pg); default DefaultDir.
	Dir string
	// NATS configures the embedded NATS server; its Dir defaults to
	// Dir/nats.
	NATS NATSConfig
	// Postgres says where PostgreSQL comes from; its Dir defaults to
	// Dir/pg.
	Postgres PostgresConfig
	// Log receives progress messages; nil discards them.
	Log *slog.Logger
}

// Env is a running development environment.
type Env struct {
	// NATS is the embedded server; its URL is what CRIER_NATS_URL should be.
	NATS *NATS
	// Postgres is the database found or started, and where it came from.
	Postgres *Postgres
}

// Start starts the embedded NATS server and finds or starts PostgreSQL. On
// error, whatever was started is stopped again.
func Start(ctx context.Context, cfg Config) (*Env, error) {
	if cfg.Dir == "" {
		cfg.Dir = DefaultDir
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.NATS.Dir == "" {
		cfg.NATS.Dir = filepath.Join(cfg.Dir, "nats")
	}
	if cfg.NATS.Log == nil {
		cfg.NATS.Log = cfg.Log
	}
	if cfg.Postgres.Dir == "" {
		cfg.Postgres.Dir = filepath.Join(cfg.Dir, "pg")
	}
	if cfg.Postgres.Log == nil {
		cfg.Postgres.Log = cfg.Log
	}
	ns, err := StartNATS(cfg.NATS)
	if err != nil {
		return nil, err
	}
	cfg.Log.InfoContext(ctx, "embedded NATS server with JetStream started", "url", ns.URL(), "dir", cfg.NATS.Dir)
	pg, err := StartPostgres(ctx, cfg.Postgres)
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ns.Stop(stopCtx)
		return nil, err
	}
	cfg.Log.InfoContext(ctx, "postgresql ready", "source", pg.Source, "url", pg.URL)
	return &Env{NATS: ns, Postgres: pg}, nil
}

// Stop stops PostgreSQL (when this environment started it) and the NATS
// server, waiting at most until ctx is done. It is idempotent.
func (e *Env) Stop(ctx context.Context) error {
	err := e.Postgres.Stop(ctx)
	e.NATS.Stop(ctx)
	return err
}

// Seed applies the migrations to the database at url (logging each to log,
// which may be nil) and loads the example catalog (eMar, CAPA, Atlas Sync
// with Sync Pod A and B) and the example subscribers, leaving existing rows
// as they are.
func Seed(ctx context.Context, url string, log *slog.Logger) error {
	st, err := store.Open(ctx, url, 2)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, log); err != nil {
		return err
	}
	if err := example.Load(ctx, st, example.Components(), example.Subscribers()); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}
