package devenv

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestNATS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nats")
	ns, err := StartNATS(NATSConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Stop(ctx)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("JetStream is not enabled: %v", err)
	}
	if _, err := js.Publish(ctx, "t.1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		t.Errorf("no JetStream data in %s: %v", dir, err)
	}

	u, _ := url.Parse(ns.URL())
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ns.Stop(stopCtx)
	ns.Stop(stopCtx) // idempotent
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		c.Close()
		t.Errorf("NATS still listens on %s after Stop", u.Host)
	}
}

func TestNATSPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	ns, err := StartNATS(NATSConfig{Port: port, Dir: t.TempDir()})
	if err == nil {
		ns.Stop(context.Background())
		t.Fatal("StartNATS on a port in use succeeded")
	}
	if !strings.Contains(err.Error(), "--nats-port") {
		t.Errorf("error does not say what to do: %v", err)
	}
}
