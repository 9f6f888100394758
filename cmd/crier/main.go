// Command crier fans incident events out to subscribers by email and SMS.
//
// Usage: crier <command> [flags]; `crier help` lists the commands and
// `crier <command> --help` describes one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // Europe/London must work on machines without a zoneinfo database

	"github.com/crier-dev/crier/internal/config"
	"github.com/crier-dev/crier/internal/redact"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, env *env, args []string) error
}

// env is what every command gets: the configuration source and the
// standard streams.
type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
}

func commands() []command {
	return []command{
		{"serve", "run the HTTP server, fan-out consumer and delivery workers", cmdServe},
		{"dev", "run everything on this machine with no set-up (embedded NATS, local PostgreSQL, captured outbox)", cmdDev},
		{"migrate", "apply the database migrations", cmdMigrate},
		{"publish", "publish one event to JetStream", cmdPublish},
		{"components", "list, add or remove catalog components", cmdComponents},
		{"subscribers", "list, add or remove subscribers", cmdSubscribers},
		{"drill", "send a drill: a marked test that homes acknowledge", cmdDrill},
		{"deliveries", "report deliveries of an event or incident, or retry failed ones", cmdDeliveries},
		{"healthcheck", "exit 0 when crier serve on this host is ready (for container health checks)", cmdHealthcheck},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr}
	os.Exit(run(ctx, e, os.Args[1:]))
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		// Errors can carry a URL or DSN from the configuration: mask
		// the credentials (and any address) whatever produced them.
		fmt.Fprintf(e.stderr, "crier %s: %s\n", c.name, redact.String(err.Error()))
		return 1
	}
	fmt.Fprintf(e.stderr, "crier: unknown command %q\n", args[0])
	usage(e.stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "crier fans incident events out to subscribers by email and SMS.")
	fmt.Fprintln(w, "\nUsage: crier <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nConfiguration is read from CRIER_* environment variables (see README.md).")
	fmt.Fprintln(w, "Run 'crier <command> --help' for a command's flags.")
}

// errUsage means the flags were wrong; the flag package already said so.
var errUsage = errors.New("usage")

// parse parses flags, mapping flag errors to errUsage.
func parse(fs *flag.FlagSet, e *env, args []string) error {
	fs.SetOutput(e.stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

func loadConfig(e *env) (config.Config, error) {
	return config.Load(e.getenv)
}

// parseServeFlags parses the flags of serve and dev, loads the
// configuration and applies --http-addr (addr) when given.
func parseServeFlags(fs *flag.FlagSet, e *env, args []string, addr *string) (config.Config, error) {
	if err := parse(fs, e, args); err != nil {
		return config.Config{}, err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return config.Config{}, err
	}
	if *addr != "" {
		cfg.HTTPAddr = *addr
	}
	return cfg, nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	// Addresses, phone numbers and secrets are masked whoever logs them.
	return slog.New(redact.NewHandler(h))
}
