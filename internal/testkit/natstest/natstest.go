// Package natstest runs an embedded NATS server with JetStream for one test,
// its storage in the test's temporary directory.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is an embedded NATS server.
type Server struct {
	*server.Server
	opts *server.Options
	port int
}

// New starts an embedded NATS server with JetStream on a random loopback
// port and shuts it down when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	return NewWith(t, nil)
}

// NewWith is New with the options changed by configure first (TLS,
// authentication).
func NewWith(t testing.TB, configure func(*server.Options)) *Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	if configure != nil {
		configure(opts)
	}
	return start(t, opts)
}

func start(t testing.TB, opts *server.Options) *Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("natstest: server not ready")
	}
	s := &Server{Server: ns, opts: opts, port: ns.Addr().(*net.TCPAddr).Port}
	t.Cleanup(s.Stop)
	return s
}

// URL is the client URL of the server.
func (s *Server) URL() string { return s.ClientURL() }

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// Restart starts a stopped server again on the same port and storage, so
// clients with reconnect enabled find it again.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	opts := *s.opts
	opts.Port = s.port
	ns := start(t, &opts)
	s.Server = ns.Server
}
