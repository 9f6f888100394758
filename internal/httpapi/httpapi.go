// Package httpapi is crier's HTTP interface: the JSON API for publishers and
// administrators, the self-service pages for subscribers and a small admin
// dashboard. Handlers decode requests, call the packages that hold the
// rules (internal/subscriber for subscribers and the double opt-in,
// internal/store, internal/stream) and encode the answers.
//
// JSON API, every route behind "Authorization: Bearer <token>" with a token
// from CRIER_API_TOKENS (401 without one; no tokens configured means every
// request is refused):
//
//	POST   /v1/events                      validate, publish to JetStream, 202 {"id","duplicate":false} / 200 duplicate
//	GET    /v1/events?incident_id=&limit=  an incident's updates (or the latest events), each with delivery counts
//	GET    /v1/events/{id}                 one event with its delivery counts per channel and state
//	GET    /v1/events/{id}/deliveries      ?channel=&state=&after=&limit=: deliveries, addresses masked, paginated
//	GET    /v1/components                  the catalog
//	PUT    /v1/components/{key...}         create (201) or update (200) {"name","description"}
//	DELETE /v1/components/{key...}         204; 409 while it has children or subscriptions, unless ?force=true
//	GET    /v1/subscribers                 ?after=&limit=: subscribers by id, paginated
//	GET    /v1/subscribers.csv             every subscriber as CSV: the import's columns plus email_state, sms_state
//	POST   /v1/subscribers                 201 with the subscriber; 409 when an address exists
//	GET    /v1/subscribers/{id}
//	PATCH  /v1/subscribers/{id}            change any of the fields of POST
//	DELETE /v1/subscribers/{id}            204; the subscriber and their deliveries are erased
//	POST   /v1/subscribers/import          text/csv: created, updated and refused rows (with line and reason)
//	POST   /v1/drills                      a drill (kind drill, status test): components, title, body, escalate
//	GET    /v1/incidents/{id}              an incident's summary: latest status, highest impact, deliveries, homes told and acknowledged
//	GET    /v1/incidents/{id}/organisations per home: first told, channels, deliveries (masked), acknowledgement; CSV with Accept: text/csv
//	POST   /v1/incidents/{id}/acknowledgements record a home's acknowledgement (the support desk)
//	POST   /v1/organisations               a care home: key, name, phone (its landline); 409 when the key exists
//	GET    /v1/organisations
//	GET    /v1/organisations/{key}         with its contacts (subscribers and their roles)
//	PATCH  /v1/organisations/{key}         name, phone
//	DELETE /v1/organisations/{key}         204; its contacts stay, each a home of one
//
// Errors are {"error": "...", "field": "..."} with these statuses: 400 when
// the body is not well-formed (not UTF-8, not JSON, not one JSON object,
// empty) or a query parameter is malformed; 422 when well-formed input
// breaks the rules (missing, unknown or mistyped fields, bad values,
// unknown components, a bad email address or phone number); 401 without a
// valid token; 404 for what does not exist; 409 for conflicts; 413 for a
// body over the limit (event.MaxPayloadBytes for events); 415 for a wrong
// Content-Type; 503 when PostgreSQL or JetStream cannot be reached (an event
// is never answered 202 unless JetStream acknowledged storing it).
//
// Pages (server-rendered, usable without JavaScript; every form is
// protected from cross-site forgery by http.CrossOriginProtection):
//
//	GET  /subscribe                     choose email and/or mobile and the components
//	POST /subscribe                     double opt-in: email gets a signed link, mobile a 6-digit code
//	POST /subscribe/verify              enter the texted code
//	GET  /confirm/{id}/{token}          confirm button for an email confirmation link
//	POST /confirm/{id}/{token}          confirms the email address
//	GET  /manage/{token}                change components and channels, unsubscribe (links from compose.ManageURL)
//	POST /manage/{token}
//	GET  /unsubscribe/{token}           confirm button (links from compose.UnsubscribeURL)
//	POST /unsubscribe/{token}           unsubscribes at once, also RFC 8058 one-click
//	GET  /admin                         sign-in form, or the dashboard of recent events with delivery bars
//	GET  /admin/incidents/{id}          per home: told, delivered, acknowledged; ?filter=unacknowledged
//	GET  /admin/incidents/{id}          per home: told, delivered, acknowledged; ?filter=unacknowledged
//	POST /admin/login                   sign in with an API token: a session cookie holding an HMAC of it
//	POST /admin/logout                  end this session (server-side: the cookie stops working everywhere)
//	POST /admin/logout-everywhere       end every admin session (signed in, or with a bearer token)
//
// Rate limits on subscribing, entering codes and signing in are token
// buckets kept in this process's memory, per client address and per email
// address or phone number: with several crier processes behind a load
// balancer, each process enforces its own limits.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/alerting"
	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/intake"
	"github.com/crier-dev/crier/internal/metrics"
	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/publicurl"
	"github.com/crier-dev/crier/internal/render"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/subscriber"
	"github.com/crier-dev/crier/internal/token"
)

// Limit is a token bucket: Burst requests at once, then one per Every.
// Every limit holds for the whole deployment, however many processes
// serve the pages (see limiter).
type Limit struct {
	Every time.Duration
	Burst int
}

// Default abuse limits. A bucket of Burst regained over Burst×Every:
//   - subscribe requests per client address: 10, then one a minute;
//   - subscribe requests per phone number and per email address: 3, then
//     one every 10 minutes;
//   - texted codes per client address: 10 per 4 hours (one every 24
//     minutes), as Statuspage allows SMS subscriptions per IP: the defence
//     against SMS pumping, which costs the sender per text;
//   - code entries per client address: 20, then one every 10 seconds;
//   - admin sign-in attempts per client address: 10, then one every 30 s;
//   - wrong bearer tokens and session cookies per client address: 20, then
//     one every 30 s (the right token is never refused).
var (
	DefaultSubscribePerClient  = Limit{Every: time.Minute, Burst: 10}
	DefaultSubscribePerAddress = Limit{Every: 10 * time.Minute, Burst: 3}
	DefaultSMSPerClient        = Limit{Every: 24 * time.Minute, Burst: 10}
	DefaultVerifyPerClient     = Limit{Every: 10 * time.Second, Burst: 20}
	DefaultSignInPerClient     = Limit{Every: 30 * time.Second, Burst: 10}
	DefaultAuthFailPerClient   = Limit{Every: 30 * time.Second, Burst: 20}
)

// Config configures the API and the pages. Zero fields take the defaults
// documented on each field (see WithDefaults).
type Config struct {
	// APITokens are the bearer tokens accepted by /v1 and /admin. With none,
	// every authenticated route refuses every request.
	APITokens []string
	// PublicURL is crier's external base URL; confirmation links start with
	// it. Required.
	PublicURL string
	// PhoneRegion interprets phone numbers given without a country code
	// (default GB).
	PhoneRegion string
	// SiteName is shown in page titles and confirmation messages (default
	// "crier").
	SiteName string
	// TimeZone shows times on pages (default Europe/London, as
	// CRIER_TIMEZONE).
	TimeZone string

	// PublishTimeout bounds the wait for JetStream's acknowledgement of an
	// event (default 5s); without one the answer is 503.
	PublishTimeout time.Duration

	// CodeTTL is how long a texted code is valid (default 10m) and
	// CodeAttempts how many tries it allows (default 5).
	CodeTTL      time.Duration
	CodeAttempts int
	// ConfirmTTL is how long an email confirmation link is valid (default
	// 48h).
	ConfirmTTL time.Duration
	// SessionTTL is how long an admin sign-in lasts (default 12h).
	SessionTTL time.Duration
	// SendTimeout bounds sending one confirmation message (default 20s).
	SendTimeout time.Duration

	// SubscribePerClient limits subscribe requests per client address,
	// SubscribePerAddress per phone number and per email address, and
	// SMSPerClient the texted codes per client address, so the page cannot
	// be used to pump texts. VerifyPerClient limits code entries per client
	// address, SignInPerClient admin sign-in attempts. Zero fields take the
	// Default* limits.
	SubscribePerClient  Limit
	SubscribePerAddress Limit
	SMSPerClient        Limit
	VerifyPerClient     Limit
	SignInPerClient     Limit
	// AuthFailPerClient limits the wrong bearer tokens and session cookies
	// a client address may present: beyond it, 429 instead of 401.
	AuthFailPerClient Limit
	// Alerts says how monitoring notifications name components
	// (POST /v1/integrations/...).
	Alerts alerting.Mapping
	// TrustedProxies are the reverse proxies whose ClientIPHeader is
	// believed (see clientKey); the header of any other peer is ignored.
	TrustedProxies []netip.Prefix
	// ClientIPHeader, when set, names a header set by a trusted reverse
	// proxy holding the client address (the last entry of a list is used,
	// as X-Forwarded-For appends). Empty means the connection's address.
	ClientIPHeader string

	// Now returns the time (default time.Now); tests move it.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.TimeZone == "" {
		c.TimeZone = render.DefaultTimeZone
	}
	if c.PhoneRegion == "" {
		c.PhoneRegion = phone.DefaultRegion
	}
	if c.SiteName == "" {
		c.SiteName = subscriber.DefaultSiteName
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.CodeTTL <= 0 {
		c.CodeTTL = subscriber.DefaultCodeTTL
	}
	if c.CodeAttempts <= 0 {
		c.CodeAttempts = subscriber.DefaultCodeAttempts
	}
	if c.ConfirmTTL <= 0 {
		c.ConfirmTTL = subscriber.DefaultConfirmTTL
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = subscriber.DefaultSendTimeout
	}
	def := func(l *Limit, d Limit) {
		if l.Every <= 0 {
			l.Every = d.Every
		}
		if l.Burst <= 0 {
			l.Burst = d.Burst
		}
	}
	def(&c.SubscribePerClient, DefaultSubscribePerClient)
	def(&c.SubscribePerAddress, DefaultSubscribePerAddress)
	def(&c.SMSPerClient, DefaultSMSPerClient)
	def(&c.VerifyPerClient, DefaultVerifyPerClient)
	def(&c.SignInPerClient, DefaultSignInPerClient)
	def(&c.AuthFailPerClient, DefaultAuthFailPerClient)
	if c.Now == nil {
		c.Now = time.Now
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("httpapi: PublicURL %q is not an absolute http(s) URL", c.PublicURL)
	}
	return nil
}

// Links makes the personal links put in messages; compose.Composer is one.
type Links = subscriber.Links

// Deps are the parts the handlers use.
type Deps struct {
	Store     *store.Store
	JetStream jetstream.JetStream
	Signer    *token.Signer
	// Links makes manage links (compose.Composer).
	Links Links
	// Senders send confirmation messages directly, by channel
	// (deliver.ChannelEmail, deliver.ChannelSMS); a channel without a
	// sender is not offered on the subscribe page.
	Senders map[string]deliver.Sender
	// Metrics is optional.
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// Channels, when set, reports the delivery channels' state; the
	// dashboard shows the paused ones and why.
	Channels func() []deliver.ChannelStatus
	// CheckURL, when set, checks a subscriber's destination URL when it is
	// saved (webhook.Sender.CheckURL: the address rules).
	CheckURL func(ctx context.Context, raw string) error
}

// API serves the JSON API, the pages and the dashboard.
type API struct {
	cfg   Config
	d     Deps
	pages map[string]*template.Template
	subs  *subscriber.Service
	cop   *http.CrossOriginProtection
	loc   *time.Location
	// intake admits published events, as the fan-out consumer does.
	intake *intake.Intake
	// patterns are the /v1 routes Register added.
	patterns []string

	subscribeClient  *limiter
	subscribeAddress *limiter
	smsClient        *limiter
	verifyClient     *limiter
	signInClient     *limiter
	authFailClient   *limiter

	apiTokenHashes [][32]byte
}

// New checks the configuration, parses the page templates and returns the
// API.
func New(cfg Config, d Deps) (*API, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Signer == nil || d.Links == nil {
		return nil, errors.New("httpapi: Store, Signer and Links are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(cfg.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("httpapi: time zone %q: %w", cfg.TimeZone, err)
	}
	a := &API{
		loc:              loc,
		cfg:              cfg,
		d:                d,
		pages:            pages,
		cop:              http.NewCrossOriginProtection(),
		subscribeClient:  newLimiter("subscribe-client", cfg.SubscribePerClient, d.Store, d.Signer),
		subscribeAddress: newLimiter("subscribe-address", cfg.SubscribePerAddress, d.Store, d.Signer),
		smsClient:        newLimiter("sms-client", cfg.SMSPerClient, d.Store, d.Signer),
		verifyClient:     newLimiter("verify-client", cfg.VerifyPerClient, d.Store, d.Signer),
		signInClient:     newLimiter("signin-client", cfg.SignInPerClient, d.Store, d.Signer),
		authFailClient:   newLimiter("authfail-client", cfg.AuthFailPerClient, d.Store, d.Signer),
		apiTokenHashes:   hashTokens(cfg.APITokens),
		intake:           intake.New(d.Store, d.Metrics, cfg.Now),
	}
	a.subs, err = subscriber.New(subscriber.Config{
		PhoneRegion: cfg.PhoneRegion, PublicURL: cfg.PublicURL, SiteName: cfg.SiteName,
		CodeTTL: cfg.CodeTTL, CodeAttempts: cfg.CodeAttempts, ConfirmTTL: cfg.ConfirmTTL,
		SendTimeout: cfg.SendTimeout, Now: cfg.Now,
	}, subscriber.Deps{Store: d.Store, Signer: d.Signer, Links: d.Links, Senders: d.Senders, CheckURL: d.CheckURL})
	if err != nil {
		return nil, err
	}
	a.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.renderMessage(w, r, http.StatusForbidden, message{
			Heading: "This form was sent from another site",
			Text:    []string{"For your safety, forms on this site only work when they are filled in here. Go back to the page, reload it and try again."},
		})
	}))
	return a, nil
}

// Register adds every route to mux.
func (a *API) Register(mux *http.ServeMux) {
	api := func(pattern string, h apiHandler) {
		a.patterns = append(a.patterns, pattern)
		mux.Handle(pattern, a.apiRoute(h))
	}
	a.patterns = append(a.patterns, "GET /v1/openapi.json")
	mux.HandleFunc("GET /v1/openapi.json", serveOpenAPI)
	api("POST /v1/events", a.postEvent)
	api("POST /v1/integrations/alertmanager", a.postAlerts("alertmanager"))
	api("POST /v1/integrations/grafana", a.postAlerts("grafana"))
	api("GET /v1/events", a.listEvents)
	api("GET /v1/events/{id}", a.getEvent)
	api("GET /v1/events/{id}/deliveries", a.listDeliveries)
	api("GET /v1/components", a.listComponents)
	api("PUT /v1/components/{key...}", a.putComponent)
	api("DELETE /v1/components/{key...}", a.deleteComponent)
	api("GET /v1/subscribers", a.listSubscribers)
	api("GET /v1/subscribers.csv", a.exportSubscribers)
	api("POST /v1/subscribers", a.createSubscriber)
	api("GET /v1/subscribers/{id}", a.getSubscriber)
	api("PATCH /v1/subscribers/{id}", a.patchSubscriber)
	api("DELETE /v1/subscribers/{id}", a.deleteSubscriber)
	api("POST /v1/subscribers/import", a.importSubscribers)
	api("POST /v1/drills", a.postDrill)
	api("GET /v1/incidents/{id}", a.getIncident)
	api("GET /v1/incidents/{id}/organisations", a.incidentOrganisations)
	api("POST /v1/incidents/{id}/acknowledgements", a.postAcknowledgement)
	api("POST /v1/organisations", a.createOrganisation)
	api("GET /v1/organisations", a.listOrganisations)
	api("GET /v1/organisations/{key}", a.getOrganisation)
	api("PATCH /v1/organisations/{key}", a.patchOrganisation)
	api("DELETE /v1/organisations/{key}", a.deleteOrganisation)

	page := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, a.pageRoute(h)) }
	page("GET /subscribe", a.subscribeForm)
	page("POST /subscribe", a.subscribe)
	page("POST /subscribe/verify", a.verifyCode)
	page("GET "+publicurl.ConfirmPattern, a.confirmEmail)
	page("POST "+publicurl.ConfirmPattern, a.confirmEmail)
	page("GET "+publicurl.ManagePattern, a.manage)
	page("POST "+publicurl.ManagePattern, a.manage)
	page("GET "+publicurl.UnsubscribePattern, a.unsubscribe)
	page("POST "+publicurl.UnsubscribePattern, a.unsubscribe)
	page("GET "+publicurl.AckPattern, a.ack)
	page("POST "+publicurl.AckPattern, a.ack)
	page("GET /admin", a.dashboard)
	page("GET /admin/incidents/{id}", a.incidentPage)
	page("POST /admin/login", a.signIn)
	page("POST /admin/logout", a.signOut)
	page("POST /admin/logout-everywhere", a.signOutEverywhere)
}

// APIPatterns returns the /v1 route patterns Register added ("GET
// /v1/events/{id}"), for checking that the OpenAPI document has them all.
func (a *API) APIPatterns() []string { return slices.Clone(a.patterns) }

// Handler returns a handler serving every route, for tests and for
// embedding.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	a.Register(mux)
	return mux
}

// pageRoute adds the headers every page carries and the protection against
// cross-site form posts.
func (a *API) pageRoute(h http.HandlerFunc) http.Handler {
	protected := a.cop.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		// Links carry secrets in their path: never pass them on.
		hdr.Set("Referrer-Policy", "no-referrer")
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("X-Frame-Options", "DENY")
		hdr.Set("Cache-Control", "no-store")
		protected.ServeHTTP(w, r)
	})
}
