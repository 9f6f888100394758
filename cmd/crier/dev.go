package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/config"
	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/devenv"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/redact"
	"github.com/crier-dev/crier/internal/serve"
)

const devUsage = `Usage: crier dev [flags]

Runs crier on this machine with no set-up: an embedded NATS server with
JetStream, PostgreSQL (CRIER_DATABASE_URL if set, else the server on
127.0.0.1:5432 with a database crier_dev, else a private cluster started from
this machine's PostgreSQL binaries), the example catalog and subscribers, and
an outbox at /dev/outbox that captures every email and text instead of
sending it. CRIER_SMTP_URL or CRIER_TWILIO_ACCOUNT_SID, when set, send that
channel for real. Ctrl-C stops everything.

`

func cmdDev(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("crier dev", flag.ContinueOnError)
	addr := fs.String("http-addr", "", "listen address (overrides CRIER_HTTP_ADDR, default 127.0.0.1:8080; port 0 picks a free one)")
	dir := fs.String("dir", devenv.DefaultDir, "directory for the embedded NATS server's data (DIR/nats) and a private PostgreSQL cluster (DIR/pg)")
	natsPort := fs.Int("nats-port", 0, "client port of the embedded NATS server (0 picks a free one)")
	probe := fs.String("postgres-probe", devenv.DefaultProbe, "address of a local PostgreSQL server to use when CRIER_DATABASE_URL is not set (off: never)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), devUsage)
		fs.PrintDefaults()
	}
	cfg, err := parseServeFlags(fs, e, args, addr)
	if err != nil {
		return err
	}
	if e.getenv("CRIER_LOG_FORMAT") == "" {
		cfg.LogFormat = "text"
	}
	log := newLogger(cfg, e.stderr)

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set CRIER_HTTP_ADDR or --http-addr; port 0 picks a free one)", cfg.HTTPAddr, err)
	}
	defer ln.Close()
	if e.getenv("CRIER_PUBLIC_URL") == "" {
		cfg.PublicURL = "http://" + browsable(ln.Addr())
	}
	devToken := ensureAPIToken(&cfg)

	denv, err := devenv.Start(ctx, devenv.Config{
		Dir:      *dir,
		NATS:     devenv.NATSConfig{Port: *natsPort},
		Postgres: devenv.PostgresConfig{URL: cfg.DatabaseURL, Probe: *probe},
		Log:      log,
	})
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		if err := denv.Stop(stopCtx); err != nil {
			log.Error("stop the development environment", "error", err)
		} else {
			log.Info("crier dev stopped")
		}
	}()
	cfg.DatabaseURL = denv.Postgres.URL
	cfg.NATSURL = denv.NATS.URL()
	if err := devenv.Seed(ctx, cfg.DatabaseURL, log); err != nil {
		return err
	}

	outbox := devenv.NewOutbox(devenv.OutboxConfig{BaseURL: cfg.PublicURL, Log: log})
	senders, channels := devSenders(cfg, outbox)
	return serve.Run(ctx, cfg, log, serve.Options{
		Senders:  senders,
		Listener: ln,
		Routes:   func(mux *http.ServeMux, _ *serve.Deps) { outbox.Mount(mux) },
		Ready: func(string) {
			printDevBanner(e.stdout, devBanner{
				publicURL: cfg.PublicURL, natsURL: cfg.NATSURL, natsDir: filepath.Join(*dir, "nats"),
				pgSource: denv.Postgres.Source, pgURL: redact.String(cfg.DatabaseURL), channels: channels,
				token: devToken,
			})
		},
	})
}

// ensureAPIToken makes a bearer token for this run when none is
// configured, since the HTTP API and the admin page need one, and returns
// it (empty when tokens were configured).
func ensureAPIToken(cfg *config.Config) string {
	if len(cfg.APITokens) > 0 {
		return ""
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := "dev-" + hex.EncodeToString(b) // longer than config.MinAPITokenLen
	cfg.APITokens = []string{tok}
	return tok
}

// devSenders returns the outbox's sender for each channel that has no
// provider settings (serve builds the others from cfg), and how each
// channel is served, for the banner.
func devSenders(cfg config.Config, outbox *devenv.Outbox) (map[string]deliver.Sender, map[string]string) {
	senders := map[string]deliver.Sender{}
	channels := map[string]string{deliver.ChannelEmail: "sent by SMTP (CRIER_SMTP_URL)", deliver.ChannelSMS: "sent by Twilio (CRIER_TWILIO_ACCOUNT_SID)"}
	if !cfg.EmailEnabled() {
		senders[deliver.ChannelEmail] = outbox.Sender(deliver.ChannelEmail)
		channels[deliver.ChannelEmail] = "captured in the outbox"
	}
	if !cfg.SMSEnabled() {
		senders[deliver.ChannelSMS] = outbox.Sender(deliver.ChannelSMS)
		channels[deliver.ChannelSMS] = "captured in the outbox"
	}
	return senders, channels
}

// browsable is addr as a browser can open it: an unspecified host (all
// interfaces) becomes localhost.
func browsable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

type devBanner struct {
	publicURL, natsURL, natsDir, pgSource, pgURL string
	channels                                     map[string]string
	// token is the API token made for this run ("" when CRIER_API_TOKENS
	// gave some).
	token string
}

// printDevBanner tells the person who ran crier dev what to open and what
// to try. It goes to standard output; logs go to standard error.
func printDevBanner(w io.Writer, b devBanner) {
	self := os.Args[0]
	if strings.Contains(self, "go-build") {
		self = "go run ./cmd/crier"
	}
	var subs []string
	for _, s := range example.Subscribers() {
		var ch []string
		if s.Email != "" {
			ch = append(ch, "email")
		}
		if s.Phone != "" {
			ch = append(ch, "SMS")
		}
		subs = append(subs, fmt.Sprintf("    %s, %s: %s (%s)", s.Name, s.Organisation, strings.Join(s.Components, ", "), strings.Join(ch, " and ")))
	}
	token, tokenNote := b.token, "made for this run"
	if token == "" {
		token, tokenNote = "$TOKEN", "one of CRIER_API_TOKENS"
	}
	fmt.Fprintf(w, `
crier dev is running. Open:
  outbox     %[1]s/dev/outbox    emails and texts, captured instead of sent
  subscribe  %[1]s/subscribe     self-service sign-up (its confirmations land in the outbox)
  admin      %[1]s/admin         recent events and deliveries (sign in with the API token)
  ready      %[1]s/readyz
  metrics    %[1]s/metrics

  NATS       %[2]s (JetStream, data in %[3]s)
  database   %[4]s (%[5]s)
  email      %[6]s
  SMS        %[7]s
  API token  %[10]s (%[11]s)

Example catalog: eMar (emar), CAPA (capa), Atlas Sync (atlas-sync) with
Sync Pod A (atlas-sync/sync-pod-a) and Sync Pod B (atlas-sync/sync-pod-b).
Example subscribers:
%[8]s

Try it in another terminal: the first update of an incident on Sync Pod A
(Alex Morgan and Sam Patel follow it, Jo Williams does not):

  CRIER_NATS_URL=%[2]s %[9]s publish \
    --incident-id 2025-11-10-atlas-sync --status investigating --impact major \
    --title 'Atlas Device Synchronisation Issues' \
    --body 'Some users are experiencing sync issues on Sync Pod A. Please switch to Sync Pod B.' \
    --component atlas-sync/sync-pod-a

or over HTTP:

  curl -H 'Authorization: Bearer %[10]s' -H 'Content-Type: application/json' %[1]s/v1/events \
    -d '{"id":"2025-11-10-atlas-sync-'$(date +%%s)'","incident_id":"2025-11-10-atlas-sync","kind":"incident","status":"identified","impact":"major","title":"Atlas Device Synchronisation Issues","body":"The cause has been identified.","components":["atlas-sync"],"occurred_at":"'$(date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ)'"}'

then watch %[1]s/dev/outbox. Ctrl-C stops everything.

`, b.publicURL, b.natsURL, b.natsDir, b.pgURL, b.pgSource,
		b.channels[deliver.ChannelEmail], b.channels[deliver.ChannelSMS], strings.Join(subs, "\n"), self, token, tokenNote)
}
