package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/httpapi"
	"github.com/crier-dev/crier/internal/twiliohook"
)

// httpService is the HTTP server: the API, the pages, the webhooks, the
// health and metrics endpoints.
type httpService struct {
	srv  *http.Server
	ln   net.Listener
	addr string
	done chan struct{}
}

// httpService listens (on opts.Listener or CRIER_HTTP_ADDR) and builds the
// server with every route; Start serves.
func (d *Deps) httpService(opts Options) (*httpService, error) {
	ln := opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", d.Config.HTTPAddr); err != nil {
			return nil, fmt.Errorf("listen on CRIER_HTTP_ADDR %s: %w", d.Config.HTTPAddr, err)
		}
	}
	mux := http.NewServeMux()
	if err := d.routes(mux); err != nil {
		_ = ln.Close()
		return nil, err
	}
	if d.Config.SMSEnabled() {
		twiliohook.New(twiliohook.Config{AuthToken: d.Config.TwilioAuthToken, PublicURL: d.Config.PublicURL, AckImpacts: d.Config.AckImpacts}, d.Store, d.Log).Register(mux)
	}
	if opts.Routes != nil {
		opts.Routes(mux, d)
	}
	var handler http.Handler = mux
	if strings.HasPrefix(d.Config.PublicURL, "https://") {
		handler = hsts(mux)
	}
	return d.newHTTPService(ln, handler), nil
}

// metricsService listens on CRIER_METRICS_ADDR and serves /metrics alone,
// or returns nil when that is not set.
func (d *Deps) metricsService() (*httpService, error) {
	if d.Config.MetricsAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", d.Config.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on CRIER_METRICS_ADDR %s: %w", d.Config.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metricsHandler())
	return d.newHTTPService(ln, mux), nil
}

func (d *Deps) metricsHandler() http.Handler {
	return promhttp.HandlerFor(d.Metrics.Registry, promhttp.HandlerOpts{})
}

func (d *Deps) newHTTPService(ln net.Listener, handler http.Handler) *httpService {
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// A client trickling its body must not hold a connection for ever;
		// the slowest handler (publishing an event) waits 5 s for JetStream.
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 60 * time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(d.Log.Handler(), slog.LevelWarn),
	}
	return &httpService{srv: srv, ln: ln, addr: ln.Addr().String(), done: make(chan struct{})}
}

// Start serves until Stop; a failure to serve is reported on errc.
func (h *httpService) Start(_ context.Context, errc chan<- error) {
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case errc <- fmt.Errorf("http server: %w", err):
			default:
			}
		}
	}()
}

// Stop stops accepting connections and waits for the requests in flight,
// until ctx ends; it reports whether they all finished.
func (h *httpService) Stop(ctx context.Context) bool {
	err := h.srv.Shutdown(ctx)
	<-h.done
	return err == nil
}

// hstsMaxAge is how long browsers keep to https for crier's host once
// told (a year, as the HSTS preload list asks; subdomains are not
// included, since crier does not own them).
const hstsMaxAge = 365 * 24 * time.Hour

// hsts adds Strict-Transport-Security to every answer: with an https
// public URL, a browser must never fall back to plain http for crier,
// whose pages carry personal links.
func hsts(next http.Handler) http.Handler {
	value := fmt.Sprintf("max-age=%d", int(hstsMaxAge.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", value)
		next.ServeHTTP(w, r)
	})
}

// channels is the state of each delivery channel, in channel order.
func (d *Deps) channels() []deliver.ChannelStatus {
	out := make([]deliver.ChannelStatus, 0, len(d.Workers))
	for _, w := range d.Workers {
		out = append(out, w.Status())
	}
	slices.SortFunc(out, func(a, b deliver.ChannelStatus) int { return strings.Compare(a.Channel, b.Channel) })
	return out
}

func (d *Deps) routes(mux *http.ServeMux) error {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", d.ready)
	if d.Config.MetricsOnMain() {
		mux.Handle("GET /metrics", d.metricsHandler())
	}
	api, err := httpapi.New(httpapi.Config{
		APITokens:      d.Config.APITokens,
		PublicURL:      d.Config.PublicURL,
		PhoneRegion:    d.Config.PhoneRegion,
		TimeZone:       d.Config.TimeZone,
		ClientIPHeader: d.Config.ClientIPHeader,
		TrustedProxies: d.Config.TrustedProxies,

		SubscribePerClient:  d.Config.LimitSubscribeClient,
		SubscribePerAddress: d.Config.LimitSubscribeAddress,
		SMSPerClient:        d.Config.LimitSMSClient,
		VerifyPerClient:     d.Config.LimitCodeClient,
		SignInPerClient:     d.Config.LimitSignInClient,
		AuthFailPerClient:   d.Config.LimitAuthFailClient,
		Alerts:              d.Config.Alerts,
	}, httpapi.Deps{
		Store: d.Store, JetStream: d.JetStream, Signer: d.Signer, Links: d.Composer,
		Senders: d.Senders, Metrics: d.Metrics, Log: d.Log, Channels: d.channels,
		// Destination URLs are checked against CRIER_WEBHOOK_ALLOW_PRIVATE
		// when saved, as the senders check every connection.
		CheckURL: func(ctx context.Context, raw string) error {
			return d.Config.WebhookAllow.CheckURL(ctx, net.DefaultResolver, raw)
		},
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
