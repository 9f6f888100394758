package subscriber

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/token"
	"github.com/crier-dev/crier/internal/webhook"
)

// Config configures the rules and the double opt-in. Zero fields take the
// defaults documented on each field (see WithDefaults).
type Config struct {
	// PhoneRegion interprets phone numbers given without a country code
	// (default phone.DefaultRegion, GB).
	PhoneRegion string
	// PublicURL is crier's external base URL; confirmation links start
	// with it. Required.
	PublicURL string
	// SiteName is named in confirmation messages (default "crier").
	SiteName string
	// CodeTTL is how long a texted code is valid (default 10m) and
	// CodeAttempts how many tries it allows (default 5).
	CodeTTL      time.Duration
	CodeAttempts int
	// ConfirmTTL is how long an email confirmation link is valid (default
	// 48h).
	ConfirmTTL time.Duration
	// SendTimeout bounds sending one confirmation message (default 20s).
	SendTimeout time.Duration
	// Now returns the time (default time.Now); tests move it.
	Now func() time.Time
}

// Defaults applied by Config.WithDefaults (httpapi takes the same ones).
const (
	DefaultSiteName     = "crier"
	DefaultCodeTTL      = 10 * time.Minute
	DefaultCodeAttempts = 5
	DefaultConfirmTTL   = 48 * time.Hour
	DefaultSendTimeout  = 20 * time.Second
)

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.PhoneRegion == "" {
		c.PhoneRegion = phone.DefaultRegion
	}
	if c.SiteName == "" {
		c.SiteName = DefaultSiteName
	}
	if c.CodeTTL <= 0 {
		c.CodeTTL = DefaultCodeTTL
	}
	if c.CodeAttempts <= 0 {
		c.CodeAttempts = DefaultCodeAttempts
	}
	if c.ConfirmTTL <= 0 {
		c.ConfirmTTL = DefaultConfirmTTL
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = DefaultSendTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("subscriber: PublicURL %q is not an absolute http(s) URL", c.PublicURL)
	}
	return nil
}

// Links makes the personal links put in messages; compose.Composer is one.
type Links interface {
	ManageURL(subscriberID int64) string
}

// Deps are the parts the Service uses.
type Deps struct {
	Store *store.Store
	// Signer and Links are needed by the double opt-in only; a Service
	// without them checks and stores subscribers.
	Signer *token.Signer
	// Links makes the manage link sent to an address that is already
	// subscribed.
	Links Links
	// Senders send confirmation messages directly, by channel
	// (deliver.ChannelEmail, deliver.ChannelSMS); a channel without a
	// sender is not offered (see Offers).
	Senders map[string]deliver.Sender
	// CheckURL, when set, checks a destination URL beyond its form: that
	// it resolves only to addresses crier may call (webhook.Sender's
	// CheckURL).
	CheckURL func(ctx context.Context, raw string) error
}

// Service applies the subscriber rules and runs the double opt-in.
type Service struct {
	cfg      Config
	store    *store.Store
	signer   *token.Signer
	links    Links
	senders  map[string]deliver.Sender
	checkURL func(ctx context.Context, raw string) error
}

// New checks the configuration and returns the Service.
func New(cfg Config, d Deps) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if d.Store == nil {
		return nil, errors.New("subscriber: Store is required")
	}
	return &Service{cfg: cfg, store: d.Store, signer: d.Signer, links: d.Links, senders: d.Senders, checkURL: d.CheckURL}, nil
}

// Create checks in and stores a new subscriber, as an administrator asks:
// addresses whose channel is not used are kept but opted out, and with
// in.Confirmed the used ones are confirmed at once. It returns the stored
// subscriber. Refusals are an *InvalidError or a *FieldError (a component
// removed meanwhile), and ErrConflict when an address belongs to another
// subscriber.
func (s *Service) Create(ctx context.Context, in Input) (store.Subscriber, error) {
	d, err := s.Check(ctx, s.store, in)
	if err != nil {
		return store.Subscriber{}, err
	}
	n := newSubscriber(d, in.Confirmed)
	if n.WebhookURL != "" {
		n.WebhookSecret = webhook.NewSecret()
	}
	var optOut []string
	for ch, addr := range d.addresses() {
		if addr != "" && !d.Uses(ch) {
			optOut = append(optOut, ch)
		}
	}
	id, err := s.store.AddSubscriber(ctx, n, optOut)
	if err != nil {
		return store.Subscriber{}, storeRefusal(err)
	}
	sub, err := s.store.GetSubscriber(ctx, id)
	sub.WebhookSecret = n.WebhookSecret // shown once
	return sub, err
}

// Import checks in, one row of an import, and creates the subscriber, or
// updates the name, organisation and components (not the addresses,
// destinations or channels) of the one subscriber that has its email
// address or phone number. A created subscriber with a webhook URL gets a
// secret, returned (to be shown once). With in.Confirmed a new subscriber's addresses are confirmed at
// once. cat is usually a Snapshot taken once for the whole import.
// Refusals are an *InvalidError or a *FieldError (a component removed
// meanwhile), and ErrConflict when the email address and the phone number
// belong to two different subscribers.
func (s *Service) Import(ctx context.Context, cat Catalog, in Input) (created bool, secret string, err error) {
	d, err := s.Check(ctx, cat, in)
	if err != nil {
		return false, "", err
	}
	n := newSubscriber(d, in.Confirmed)
	if n.WebhookURL != "" {
		n.WebhookSecret = webhook.NewSecret()
	}
	if in.Role == nil {
		n.Role = "" // a subscriber updated keeps theirs
	}
	created, err = s.store.ImportSubscriber(ctx, n)
	if err != nil {
		return false, "", storeRefusal(err)
	}
	if !created {
		return false, "", nil // the existing subscriber keeps its destinations and secret
	}
	return true, n.WebhookSecret, nil
}

func newSubscriber(d Details, confirmed bool) store.NewSubscriber {
	return store.NewSubscriber{
		Email: d.Email, Phone: d.Phone, Name: d.Name, Organisation: d.Organisation, Components: d.Components,
		ConfirmEmail: confirmed && d.Uses(deliver.ChannelEmail),
		ConfirmSMS:   confirmed && d.Uses(deliver.ChannelSMS),
		WebhookURL:   d.WebhookURL, TeamsURL: d.TeamsURL, SlackURL: d.SlackURL,
		Role: d.Role,
	}
}

// storeRefusal turns the store's refusals of a new subscriber into this
// package's errors.
func storeRefusal(err error) error {
	switch {
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case errors.Is(err, store.ErrNotFound):
		return &FieldError{Field: "components", Reason: "a component does not exist", Err: ErrUnknownComponent}
	}
	return err
}

// Update changes the fields given in in of subscriber id and returns the
// subscriber as stored. A changed address starts unconfirmed unless
// in.Confirmed; with Channels the listed channels are opted in and the
// others opted out. It returns an error wrapping store.ErrNotFound for an
// unknown subscriber, an *InvalidError or *FieldError for a refusal, and
// ErrConflict when an address belongs to another subscriber.
func (s *Service) Update(ctx context.Context, id int64, in Input) (store.Subscriber, error) {
	cur, err := s.store.GetSubscriber(ctx, id)
	if err != nil {
		return store.Subscriber{}, err
	}
	var p problems
	d, err := s.check(ctx, s.store, &cur, in, &p)
	if err == nil {
		err = p.err()
	}
	if err != nil {
		return store.Subscriber{}, err
	}
	u := update(in, d)
	var secret string
	if d.WebhookURL != "" && d.WebhookURL != cur.WebhookURL {
		secret = webhook.NewSecret()
		u.WebhookSecret = &secret
	}
	err = s.store.UpdateSubscriber(ctx, id, u)
	switch {
	case errors.Is(err, store.ErrConflict):
		return store.Subscriber{}, fmt.Errorf("%w: %w", ErrConflict, err)
	case errors.Is(err, store.ErrNoAddress):
		return store.Subscriber{}, &FieldError{Field: "email", Reason: noAddressLeft, Err: ErrNoAddress}
	case err != nil:
		return store.Subscriber{}, err
	}
	sub, err := s.store.GetSubscriber(ctx, id)
	sub.WebhookSecret = secret // shown once, when the URL is new
	return sub, err
}

// update is the store update that gives the fields of in their checked
// values d.
func update(in Input, d Details) store.SubscriberUpdate {
	var u store.SubscriberUpdate
	if in.Email != nil {
		u.Email = &d.Email
	}
	if in.Phone != nil {
		u.Phone = &d.Phone
	}
	if in.Name != nil {
		u.Name = &d.Name
	}
	if in.Organisation != nil {
		u.Organisation = &d.Organisation
	}
	if in.Role != nil {
		u.Role = &d.Role
	}
	if in.Components != nil {
		u.Components = &d.Components
	}
	if in.WebhookURL != nil {
		u.WebhookURL = &d.WebhookURL
	}
	if in.TeamsURL != nil {
		u.TeamsURL = &d.TeamsURL
	}
	if in.SlackURL != nil {
		u.SlackURL = &d.SlackURL
	}
	if in.Channels != nil {
		for _, ch := range deliver.Channels {
			switch addr := d.addresses()[ch]; {
			case addr == "":
			case d.Uses(ch):
				u.OptIn = append(u.OptIn, ch)
			default:
				u.OptOut = append(u.OptOut, ch)
			}
		}
	}
	if in.Confirmed {
		u.ConfirmEmail = d.Uses(deliver.ChannelEmail)
		u.ConfirmSMS = d.Uses(deliver.ChannelSMS)
	}
	return u
}
