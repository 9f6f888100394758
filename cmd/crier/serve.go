package main

import (
	"context"
	"flag"

	"github.com/crier-dev/crier/internal/serve"
	"github.com/crier-dev/crier/internal/store"
)

func cmdServe(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("crier serve", flag.ContinueOnError)
	addr := fs.String("http-addr", "", "listen address (overrides CRIER_HTTP_ADDR)")
	fs.Usage = func() {
		fs.Output().Write([]byte("Usage: crier serve [--http-addr host:port]\n\nRuns the HTTP server, the fan-out consumer and the delivery workers.\nApplies pending migrations first. Stops gracefully on SIGTERM or SIGINT.\n\n"))
		fs.PrintDefaults()
	}
	cfg, err := parseServeFlags(fs, e, args, addr)
	if err != nil {
		return err
	}
	return serve.Run(ctx, cfg, newLogger(cfg, e.stderr), serve.Options{})
}

func cmdMigrate(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("crier migrate", flag.ContinueOnError)
	fs.Usage = func() {
		fs.Output().Write([]byte("Usage: crier migrate\n\nApplies the embedded SQL migrations to CRIER_DATABASE_URL.\n"))
	}
	if err := parse(fs, e, args); err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	if err := cfg.RequireDatabase(); err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := st.Migrate(ctx, newLogger(cfg, e.stderr))
	if err != nil {
		return err
	}
	e.printf("applied %d migrations\n", n)
	return nil
}
