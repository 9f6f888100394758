// Package stream owns crier's JetStream objects: the INCIDENTS stream, the
// shared durable pull consumer crier-fanout, and publishing events with
// Nats-Msg-Id set to the event id so the stream drops duplicates.
package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/redact"
)

// Default names, part of crier's public contract.
const (
	DefaultStream   = "INCIDENTS"
	DefaultConsumer = "crier-fanout"
	DefaultSubjects = "incidents.>"
)

// Config names the JetStream objects and sets their limits.
type Config struct {
	Stream   string // default INCIDENTS
	Consumer string // default crier-fanout
	// DuplicateWindow is how long the stream remembers Nats-Msg-Id values
	// (default 2h). PostgreSQL dedups by event id forever; this window stops
	// most repeats before they cost a write.
	DuplicateWindow time.Duration
	// MaxAge bounds how long events stay in the stream (default 7 days).
	MaxAge time.Duration
	// AckWait is how long a fan-out may hold a message before it is
	// redelivered; the consumer sends progress while working (default 30s).
	AckWait time.Duration
	// MaxAckPending bounds messages in flight across all processes
	// (default 1000; at least the number of fan-out workers).
	MaxAckPending int
	// Replicas is the number of copies of the stream and consumer in a NATS
	// cluster (default 1; 3 for a three-node cluster).
	Replicas int
}

// WithDefaults fills in zero fields.
func (c Config) WithDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Hour
	}
	if c.MaxAge == 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 1000
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

// Auth is how a client proves itself to NATS and checks the server's
// certificate. Every field is a file path; empty fields are not used. The
// URL may carry a user and password or a token as well (nats://user:pass@,
// nats://token@); a tls:// URL, or any TLS field, requires TLS.
type Auth struct {
	// CredsFile is a user credentials file (a user JWT and its nkey seed,
	// as nsc or the NATS account server issues).
	CredsFile string
	// NKeyFile holds a user nkey seed (SU...), for servers that list the
	// user's public nkey.
	NKeyFile string
	// TLSCAFile is the PEM CA that signed the server's certificate.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a client certificate, for servers
	// that verify clients (verify: true).
	TLSCertFile, TLSKeyFile string
}

// options returns the nats.Options for a. nats.RootCAs and nats.ClientCert
// turn TLS on (1.2 at least) and verify the server's name against the URL.
func (a Auth) options() ([]nats.Option, error) {
	var opts []nats.Option
	if a.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if a.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(a.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("NATS nkey: %w", err)
		}
		opts = append(opts, opt)
	}
	if a.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(a.TLSCAFile))
	}
	if a.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(a.TLSCertFile, a.TLSKeyFile))
	}
	return opts, nil
}

// Connect dials NATS with reconnection forever, so a NATS outage is ridden
// out rather than fatal.
func Connect(url, name string, auth Auth) (*nats.Conn, error) {
	opts, err := auth.options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
	}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", redact.URLs(url), err)
	}
	return nc, nil
}

// Ensure creates or updates the stream and the durable consumer. It is
// idempotent and safe to run from several processes at once.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Consumer, error) {
	cfg = cfg.WithDefaults()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "crier incident events",
		Subjects:    []string{DefaultSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  cfg.DuplicateWindow,
		MaxAge:      cfg.MaxAge,
		MaxMsgSize:  event.MaxPayloadBytes,
		Discard:     jetstream.DiscardOld,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", cfg.Stream, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		Description:   "crier fan-out into the delivery ledger",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: DefaultSubjects,
		Replicas:      cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", cfg.Consumer, err)
	}
	return cons, nil
}

// ErrNotStored means JetStream did not acknowledge a publish: the event may
// not be stored and the publisher should try again.
var ErrNotStored = errors.New("event not stored by JetStream")

// PublishResult is JetStream's acknowledgement of a publish.
type PublishResult struct {
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"sequence"`
	Duplicate bool   `json:"duplicate"`
}

// Publish publishes the raw event on its subject with Nats-Msg-Id set to the
// event id and waits for the stream's acknowledgement.
func Publish(ctx context.Context, js jetstream.JetStream, ev event.Event, raw []byte) (PublishResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	ack, err := js.PublishMsg(ctx, &nats.Msg{
		Subject: event.Subject(ev),
		Data:    raw,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{ev.ID}},
	})
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish event %q: %w: %w", ev.ID, ErrNotStored, err)
	}
	return PublishResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}
