// Package serve assembles and runs what `crier serve` runs in one process:
// the HTTP server, the fan-out consumer and the delivery workers of each
// configured channel. `crier dev` and the benchmark run the same assembly
// with other senders.
package serve

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/compose"
	"github.com/crier-dev/crier/internal/config"
	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/email"
	"github.com/crier-dev/crier/internal/fanout"
	"github.com/crier-dev/crier/internal/metrics"
	"github.com/crier-dev/crier/internal/render"
	"github.com/crier-dev/crier/internal/sms"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/stream"
	"github.com/crier-dev/crier/internal/token"
	"github.com/crier-dev/crier/internal/webhook"
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
	// Workers are the delivery workers by channel (the dashboard shows
	// their state).
	Workers map[string]*deliver.Worker

	migrated atomic.Bool // readiness saw every migration applied
}

// Run starts crier and blocks until ctx is cancelled or a part fails, then
// stops in order (see stop).
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, opts Options) error {
	if err := cfg.RequireDatabase(); err != nil {
		return err
	}
	d := &Deps{Config: cfg, Log: log, Metrics: metrics.New()}
	defer d.close()
	cons, err := d.connect(ctx, opts.Stream)
	if err != nil {
		return err
	}
	if err := d.buildComposer(ctx); err != nil {
		return err
	}
	if err := d.buildSenders(opts.Senders); err != nil {
		return err
	}
	workers, err := d.deliveryWorkers(opts.Deliver)
	if err != nil {
		return err
	}
	d.Workers = workers
	web, err := d.httpService(opts)
	if err != nil {
		return err
	}
	mon, err := d.metricsService()
	if err != nil {
		_ = web.ln.Close()
		return err
	}
	switch {
	case mon != nil:
		log.InfoContext(ctx, "metrics on their own listener", "metrics_addr", mon.addr)
	case !cfg.MetricsOnMain():
		log.WarnContext(ctx, "metrics not served: CRIER_PUBLIC_URL is https, so /metrics is kept off the public listener; set CRIER_METRICS_ADDR to an internal address")
	}

	// hard ends the work in flight once the grace after a stop is over.
	hard, kill := context.WithCancel(context.WithoutCancel(ctx))
	defer kill()
	fan := fanout.New(fanout.Config{Workers: cfg.FanoutWorkers, EscalateAfter: cfg.EscalationDelay}, d.Store, log, d.Metrics)
	p := &parts{
		http:    web,
		metrics: mon,
		fanout:  newService("fan-out", func(soft context.Context) error { return fan.Serve(soft, hard, cons) }),
		workers: make([]*service, 0, len(workers)),
		listen: newService("listen", func(soft context.Context) error {
			deliver.Listen(soft, d.Store.Pool(), log, func(channel string) {
				if w, ok := workers[channel]; ok {
					w.Wake()
				}
			})
			return nil
		}),
	}
	channels := make([]string, 0, len(workers))
	for ch, w := range workers {
		channels = append(channels, ch)
		p.workers = append(p.workers, newService("deliver "+ch, func(soft context.Context) error { return w.Serve(soft, hard) }))
	}
	slices.Sort(channels)
	p.workers = append(p.workers, newService("escalate", func(soft context.Context) error {
		escalate(soft, d.Store, log)
		return nil
	}))
	errc := p.start(hard)
	log.InfoContext(ctx, "crier serving", "http_addr", web.addr, "public_url", cfg.PublicURL, "channels", strings.Join(channels, ","))
	if opts.Ready != nil {
		opts.Ready(web.addr)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	p.stop(log, cfg.ShutdownGrace, kill)
	return runErr
}

// escalateEvery is how often a process looks for due escalation steps.
const escalateEvery = time.Second

// escalate runs due escalation steps until ctx ends; every process does,
// and the claim gives each step to one of them.
func escalate(ctx context.Context, st *store.Store, log *slog.Logger) {
	t := time.NewTicker(escalateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ran, skipped, err := st.RunDueEscalations(ctx, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			log.WarnContext(ctx, "escalations", "error", err)
		case ran > 0 || skipped > 0:
			log.InfoContext(ctx, "escalation steps run", "ran", ran, "skipped", skipped)
		}
	}
}

// connect opens the database (and applies the migrations) and NATS, and
// makes sure the stream and its consumer exist.
func (d *Deps) connect(ctx context.Context, sc stream.Config) (jetstream.Consumer, error) {
	cfg := d.Config
	st, err := store.Open(ctx, cfg.DatabaseURL, int32(max(8, cfg.FanoutWorkers*store.ConnsPerFanOut+4)))
	if err != nil {
		return nil, err
	}
	d.Store = st
	if _, err := st.Migrate(ctx, d.Log); err != nil {
		return nil, err
	}
	nc, err := stream.Connect(cfg.NATSURL, "crier serve", cfg.NATSAuth)
	if err != nil {
		return nil, err
	}
	d.NATS = nc
	if d.JetStream, err = jetstream.New(nc); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	sc.Replicas = max(sc.Replicas, cfg.NATSReplicas)
	sc.MaxAckPending = max(sc.MaxAckPending, cfg.FanoutWorkers*4)
	cons, err := stream.Ensure(ctx, d.JetStream, sc)
	if err != nil {
		return nil, err
	}
	names := sc.WithDefaults()
	d.Metrics.Registry.MustRegister(
		metrics.NewQueueCollector(st),
		metrics.NewConsumerCollector(cons, names.Stream, names.Consumer),
	)
	return cons, nil
}

// deliveryWorkers builds a worker for each channel that has a sender. The
// per-channel policy lives here: email runs at most two sends per pooled
// connection, and each channel is paced by its CRIER_*_RATE.
func (d *Deps) deliveryWorkers(adjust func(*deliver.Config)) (map[string]*deliver.Worker, error) {
	cfg := d.Config
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
		if adjust != nil {
			adjust(&wcfg)
		}
		w, err := deliver.NewWorker(wcfg, d.Store, sender, d.Composer, d.Log, d.Metrics)
		if err != nil {
			return nil, err
		}
		workers[channel] = w
	}
	return workers, nil
}

// close releases what connect and buildSenders opened, in reverse order:
// the senders, NATS, then the database pool. Run calls it last, once every
// service has stopped (or the grace is over).
func (d *Deps) close() {
	d.closeSenders()
	if d.NATS != nil {
		d.NATS.Close()
	}
	if d.Store != nil {
		d.Store.Close()
	}
}

func (d *Deps) buildComposer(ctx context.Context) error {
	r, err := render.New(render.Config{Dir: d.Config.TemplatesDir, TimeZone: d.Config.TimeZone, SMSMaxSegments: d.Config.SMSMaxSegments,
		OneWaySMS: sms.IsAlphanumericSender(d.Config.TwilioFrom)})
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
		AckImpacts:         d.Config.AckImpacts,
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
		s, err := email.New(email.Config{Settings: settings, From: cfg.MailFrom, PoolSize: cfg.SMTPPool})
		if err != nil {
			return fmt.Errorf("email: %w", err)
		}
		d.Senders[deliver.ChannelEmail] = s
	}
	if _, ok := d.Senders[deliver.ChannelSMS]; !ok && cfg.SMSEnabled() {
		s, err := sms.New(sms.Config{
			AccountSID: cfg.TwilioAccountSID, AuthToken: cfg.TwilioAuthToken,
			From: cfg.TwilioFrom, MessagingServiceSID: cfg.TwilioMessagingServiceSID,
			APIURL: cfg.TwilioAPIURL, Concurrency: cfg.DeliveryWorkers,
		})
		if err != nil {
			return fmt.Errorf("sms: %w", err)
		}
		d.Senders[deliver.ChannelSMS] = s
	}
	if len(d.Senders) == 0 {
		return &config.Error{Var: "CRIER_SMTP_URL", Reason: "no channel is configured: set CRIER_SMTP_URL (email) or CRIER_TWILIO_ACCOUNT_SID (SMS)"}
	}
	// Destinations need no account: their channels are always on.
	for ch, signed := range map[string]bool{deliver.ChannelWebhook: true, deliver.ChannelTeams: false, deliver.ChannelSlack: false} {
		if _, ok := d.Senders[ch]; !ok {
			d.Senders[ch] = webhook.New(webhook.Config{Allow: cfg.WebhookAllow, Signed: signed})
		}
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
