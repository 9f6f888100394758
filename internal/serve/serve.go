// Package serve assembles and runs what `crier serve` runs in one process:
// the HTTP server, the fan-out consumer and the delivery workers of each
// configured channel. `crier dev` and the benchmark run the same assembly
// with other senders.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crier-dev/crier/internal/compose"
	"github.com/crier-dev/crier/internal/config"
	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/email"
	"github.com/crier-dev/crier/internal/fanout"
	"github.com/crier-dev/crier/internal/httpapi"
	"github.com/crier-dev/crier/internal/metrics"
	"github.com/crier-dev/crier/internal/render"
	"github.com/crier-dev/crier/internal/sms"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/stream"
	"github.com/crier-dev/crier/internal/token"
	"github.com/crier-dev/crier/internal/twiliohook"
)

// Options changes the assembly for dev mode, tests and benchmarks.
type Options struct {
	// Senders replace the senders built from the configuration, by channel.
	Senders map[string]deliver.Sender
	// Stream overrides the JetStream names and limits.
	Stream stream.Config
	// Deliver adjusts every channel's worker configuration after it is
	// built from the configuration (tests shorten backoffs and leases).
	Deliver func(*deliver.Config)
	// Routes adds handlers to the HTTP server (dev mode's outbox).
	Routes func(mux *http.ServeMux, d *Deps)
	// Listener, when set, is used instead of listening on cfg.HTTPAddr.
	Listener net.Listener
	// Ready is called once everything has started.
	Ready func(addr string)
}

// Deps are the parts a handler may need.
type Deps struct {
	Config    config.Config
	Store     *store.Store
	NATS      *nats.Conn
	JetStream jetstream.JetStream
	Metrics   *metrics.Metrics
	Renderer  *render.Renderer
	Composer  *compose.Composer
	Signer    *token.Signer
	Log       *slog.Logger
	Senders   map[string]deliver.Sender

	migrated atomic.Bool // readiness saw every migration applied
}

// Run starts crier and blocks until ctx is cancelled, then shuts down in
// order: stop accepting HTTP requests, stop pulling events and claiming
// deliveries, let work in flight finish within cfg.ShutdownGrace, close NATS
// and the database pool.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, opts Options) error {
	if err := cfg.RequireDatabase(); err != nil {
		return err
	}
	d := &Deps{Config: cfg, Log: log, Metrics: metrics.New()}

	st, err := store.Open(ctx, cfg.DatabaseURL, int32(max(8, cfg.FanoutWorkers*store.ConnsPerFanOut+4)))
	if err != nil {
		return err
	}
	defer st.Close()
	d.Store = st
	if _, err := st.Migrate(ctx, log); err != nil {
		return err
	}

	nc, err := stream.Connect(cfg.NATSURL, "crier serve")
	if err != nil {
		return err
	}
	defer nc.Close()
	d.NATS = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	d.JetStream = js
	streamCfg := opts.Stream
	streamCfg.Replicas = max(streamCfg.Replicas, cfg.NATSReplicas)
	streamCfg.MaxAckPending = max(streamCfg.MaxAckPending, cfg.FanoutWorkers*4)
	cons, err := stream.Ensure(ctx, js, streamCfg)
	if err != nil {
		return err
	}
	streamNames := streamCfg.WithDefaults()
	d.Metrics.Registry.MustRegister(
		metrics.NewQueueCollector(st),
		metrics.NewConsumerCollector(cons, streamNames.Stream, streamNames.Consumer),
	)

	if err := d.buildComposer(ctx); err != nil {
		return err
	}
	if err := d.buildSenders(opts.Senders); err != nil {
		return err
	}
	defer d.closeSenders()

	ln := opts.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("listen on CRIER_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
		}
	}
	mux := http.NewServeMux()
	if err := d.routes(mux); err != nil {
		return err
	}
	if cfg.SMSEnabled() {
		twiliohook.New(twiliohook.Config{AuthToken: cfg.TwilioAuthToken, PublicURL: cfg.PublicURL}, st, log).Register(mux)
	}
	if opts.Routes != nil {
		opts.Routes(mux, d)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// A client trickling its body must not hold a connection for ever;
		// the slowest handler (publishing an event) waits 5 s for JetStream.
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 60 * time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	// work is cancelled to stop intake; sends and fan-outs in flight finish
	// on their own (bounded) contexts.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var wg sync.WaitGroup
	errc := make(chan error, 8)

	wg.Go(func() {
		if err := fanout.New(fanout.Config{Workers: cfg.FanoutWorkers}, st, log, d.Metrics).Run(work, cons); err != nil {
			errc <- err
		}
	})
	workers := map[string]*deliver.Worker{}
	for channel, sender := range d.Senders {
		wcfg := deliver.Config{
			Channel:     channel,
			Concurrency: cfg.DeliveryWorkers,
			MaxAttempts: cfg.MaxAttempts,
			MaxAge:      cfg.MaxAge,
			Lease:       cfg.Lease,
			BaseBackoff: cfg.RetryBackoff,
			MaxBackoff:  cfg.RetryMaxBackoff,
		}
		switch channel {
		case deliver.ChannelEmail:
			wcfg.Concurrency = min(cfg.DeliveryWorkers, cfg.SMTPPool*2)
			wcfg.RatePerSecond = cfg.EmailRate
		case deliver.ChannelSMS:
			wcfg.RatePerSecond = cfg.SMSRate
		}
		if opts.Deliver != nil {
			opts.Deliver(&wcfg)
		}
		w, err := deliver.NewWorker(wcfg, st, sender, d.Composer, log, d.Metrics)
		if err != nil {
			return err
		}
		workers[channel] = w
		wg.Go(func() {
			if err := w.Run(work); err != nil {
				errc <- err
			}
		})
	}
	wg.Go(func() {
		deliver.Listen(work, st.Pool(), log, func(channel string) {
			if w, ok := workers[channel]; ok {
				w.Wake()
			}
		})
	})
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server: %w", err)
		}
	})
	channels := make([]string, 0, len(workers))
	for ch := range workers {
		channels = append(channels, ch)
	}
	log.InfoContext(ctx, "crier serving", "http_addr", ln.Addr().String(), "public_url", cfg.PublicURL, "channels", strings.Join(channels, ","))
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.InfoContext(ctx, "shutting down", "grace", cfg.ShutdownGrace)
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	stopWork()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		log.Info("stopped cleanly")
	case <-shutCtx.Done():
		log.Warn("grace period over with work in flight; its leases will expire and it will be retried")
	}
	return runErr
}

func (d *Deps) buildComposer(ctx context.Context) error {
	r, err := render.New(render.Config{Dir: d.Config.TemplatesDir, TimeZone: d.Config.TimeZone, SMSMaxSegments: d.Config.SMSMaxSegments})
	if err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	d.Renderer = r
	key := []byte(d.Config.TokenSecret)
	if len(key) == 0 {
		key, err = d.Store.Secret(ctx, "token-key", 32)
		if err != nil {
			return err
		}
	} else if len(key) < 32 {
		return &config.Error{Var: "CRIER_TOKEN_SECRET", Reason: "must be at least 32 characters"}
	}
	d.Signer, err = token.NewSigner(key)
	if err != nil {
		return err
	}
	domain, mailbox := "crier.invalid", ""
	if d.Config.MailFrom != "" {
		if a, err := mail.ParseAddress(d.Config.MailFrom); err == nil {
			mailbox = a.Address
			domain = a.Address[strings.LastIndexByte(a.Address, '@')+1:]
		}
	}
	d.Composer = compose.New(compose.Config{
		PublicURL:          strings.TrimRight(d.Config.PublicURL, "/"),
		MailDomain:         domain,
		UnsubscribeMailbox: mailbox,
	}, d.Store, r, d.Signer)
	return nil
}

func (d *Deps) buildSenders(override map[string]deliver.Sender) error {
	d.Senders = map[string]deliver.Sender{}
	for ch, s := range override {
		d.Senders[ch] = s
	}
	cfg := d.Config
	if _, ok := d.Senders[deliver.ChannelEmail]; !ok && cfg.EmailEnabled() {
		settings, err := email.ParseURL(cfg.SMTPURL)
		if err != nil {
			return &config.Error{Var: "CRIER_SMTP_URL", Reason: err.Error()}
		}
		s, err := email.New(email.Config{Settings: settings, From: cfg.MailFrom, PoolSize: cfg.SMTPPool, RatePerSecond: cfg.EmailRate})
		if err != nil {
			return fmt.Errorf("email: %w", err)
		}
		d.Senders[deliver.ChannelEmail] = s
	}
	if _, ok := d.Senders[deliver.ChannelSMS]; !ok && cfg.SMSEnabled() {
		rate := cfg.SMSRate
		if rate == 0 {
			rate = sms.Unlimited
		}
		s, err := sms.New(sms.Config{
			AccountSID: cfg.TwilioAccountSID, AuthToken: cfg.TwilioAuthToken,
			From: cfg.TwilioFrom, MessagingServiceSID: cfg.TwilioMessagingServiceSID,
			APIURL: cfg.TwilioAPIURL, RatePerSecond: rate, Concurrency: cfg.DeliveryWorkers,
		})
		if err != nil {
			return fmt.Errorf("sms: %w", err)
		}
		d.Senders[deliver.ChannelSMS] = s
	}
	if len(d.Senders) == 0 {
		return &config.Error{Var: "CRIER_SMTP_URL", Reason: "no channel is configured: set CRIER_SMTP_URL (email) or CRIER_TWILIO_ACCOUNT_SID (SMS)"}
	}
	return nil
}

func (d *Deps) closeSenders() {
	for _, s := range d.Senders {
		if c, ok := s.(interface{ Close() error }); ok {
			_ = c.Close()
		}
	}
}

func (d *Deps) routes(mux *http.ServeMux) error {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", d.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.Metrics.Registry, promhttp.HandlerOpts{}))
	api, err := httpapi.New(httpapi.Config{
		APITokens:      d.Config.APITokens,
		PublicURL:      d.Config.PublicURL,
		PhoneRegion:    d.Config.PhoneRegion,
		ClientIPHeader: d.Config.ClientIPHeader,
	}, httpapi.Deps{
		Store: d.Store, JetStream: d.JetStream, Signer: d.Signer, Links: d.Composer,
		Senders: d.Senders, Metrics: d.Metrics, Log: d.Log,
	})
	if err != nil {
		return fmt.Errorf("http api: %w", err)
	}
	api.Register(mux)
	return nil
}

// ready answers 200 when PostgreSQL and NATS answer and the migrations are
// applied, 503 naming what is not ready otherwise.
func (d *Deps) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var problems []string
	if err := d.Store.Ping(ctx); err != nil {
		problems = append(problems, "postgresql: unreachable")
	} else if !d.migrated.Load() {
		// Migrations never un-apply: once seen applied, stop asking.
		if pending, err := d.Store.MigrationsPending(ctx); err != nil || pending {
			problems = append(problems, "postgresql: migrations not applied")
		} else {
			d.migrated.Store(true)
		}
	}
	if d.NATS.Status() != nats.CONNECTED {
		problems = append(problems, "nats: "+strings.ToLower(d.NATS.Status().String()))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(strings.Join(problems, "\n") + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}
