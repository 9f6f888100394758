package devenv

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSConfig configures the embedded NATS server.
type NATSConfig struct {
	// Host is the interface to listen on (default 127.0.0.1).
	Host string
	// Port is the client port; 0 picks a free one.
	Port int
	// Dir holds the JetStream data (default .crier-dev/nats); it is kept
	// between runs, so events survive a restart as they would in production.
	Dir string
	// Log receives the server's warnings and errors (notices at debug
	// level); nil discards them.
	Log *slog.Logger
}

// WithDefaults fills in zero fields.
func (c NATSConfig) WithDefaults() NATSConfig {
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Dir == "" {
		c.Dir = DefaultDir + "/nats"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// NATS is a running embedded NATS server with JetStream.
type NATS struct {
	srv  *server.Server
	once sync.Once
}

// StartNATS starts an embedded NATS server with JetStream, storing its data
// in cfg.Dir, and waits until it accepts connections.
func StartNATS(cfg NATSConfig) (*NATS, error) {
	cfg = cfg.WithDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("nats: data directory: %w", err)
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// The server only logs a port in use and never becomes ready; say
		// so at once.
		ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("nats: %w (choose another --nats-port, or 0 for a free one)", err)
		}
		ln.Close()
	}
	opts := &server.Options{
		ServerName: "crier-dev",
		Host:       cfg.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		NoSigs:     true, // crier dev handles signals and stops the server in order
		// Monitoring stays off: one port to remember is enough.
		HTTPPort: 0,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	srv.SetLogger(natsLog{cfg.Log}, false, false)
	srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats: not ready to accept connections on %s within 15s (see the log above)",
			net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	}
	return &NATS{srv: srv}, nil
}

// URL is the client URL (nats://host:port).
func (n *NATS) URL() string { return n.srv.ClientURL() }

// Stop shuts the server down and waits for it, or for ctx. It is
// idempotent.
func (n *NATS) Stop(ctx context.Context) {
	n.once.Do(func() {
		n.srv.Shutdown()
		done := make(chan struct{})
		go func() { n.srv.WaitForShutdown(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
	})
}

// natsLog adapts slog to the NATS server's logger.
type natsLog struct{ log *slog.Logger }

func (l natsLog) Noticef(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLog) Warnf(format string, v ...any) { l.log.Warn("nats: " + fmt.Sprintf(format, v...)) }
func (l natsLog) Fatalf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLog) Errorf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLog) Debugf(string, ...any) {}
func (l natsLog) Tracef(string, ...any) {}
