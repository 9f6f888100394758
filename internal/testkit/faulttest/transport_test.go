package faulttest

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/crier-dev/crier/internal/testkit/natstest"
)

// TestNATSWithTLSAndNKey: crier serve reaches a NATS server that requires
// TLS and an nkey user through CRIER_NATS_TLS_CA and CRIER_NATS_NKEY, and
// takes an event in through it; without the nkey, or without the CA, it
// refuses to start with one line naming what failed.
func TestNATSWithTLSAndNKey(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	certFile, keyFile := selfSigned(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	seedFile := filepath.Join(t.TempDir(), "crier.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	ns := natstest.NewWith(t, func(o *server.Options) {
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		o.TLS = true
		o.TLSTimeout = 2
		o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	})
	natsURL := ns.URL() // tls://: the server requires TLS

	// Positive: TLS verified against the CA, the nkey signs the nonce.
	p := w.start("crier", map[string]string{"CRIER_NATS_URL": natsURL, "CRIER_NATS_NKEY": seedFile, "CRIER_NATS_TLS_CA": certFile})
	raw := mustEncode(t, newEvent("tls-0001", "inc-tls", "emar"))
	if code, body := p.postEvent(raw); code != http.StatusAccepted {
		t.Fatalf("POST /v1/events over authenticated NATS: %d %s", code, body)
	}
	waitFor(t, "the event stored through authenticated NATS", 20*time.Second, func() bool {
		return w.count(`SELECT count(*) FROM events WHERE id = 'tls-0001'`) == 1
	})

	// Negative: each missing piece stops start-up with one line.
	for name, c := range map[string]struct {
		env  map[string]string
		want string
	}{
		"no nkey":          {map[string]string{"CRIER_NATS_URL": natsURL, "CRIER_NATS_TLS_CA": certFile}, "authorization"},
		"no CA":            {map[string]string{"CRIER_NATS_URL": natsURL, "CRIER_NATS_NKEY": seedFile}, "certificate"},
		"a missing CA":     {map[string]string{"CRIER_NATS_URL": natsURL, "CRIER_NATS_NKEY": seedFile, "CRIER_NATS_TLS_CA": certFile + ".gone"}, "no such file"},
		"creds with nkey":  {map[string]string{"CRIER_NATS_CREDS": seedFile, "CRIER_NATS_NKEY": seedFile}, "CRIER_NATS_CREDS"},
		"cert without key": {map[string]string{"CRIER_NATS_TLS_CERT": certFile}, "CRIER_NATS_TLS_KEY"},
	} {
		out, code := w.runServe(t, c.env, "SSL_CERT_FILE=/dev/null")
		t.Logf("%s: %s", name, strings.TrimSpace(out))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 1 || len(lines) != 1 || !strings.Contains(strings.ToLower(out), strings.ToLower(c.want)) || strings.Contains(out, string(seed)) {
			t.Errorf("%s: exit %d, want 1 with one line mentioning %q:\n%s", name, code, c.want, out)
		}
	}
}

// runServe runs crier serve with the world's environment plus extra and
// returns what it printed and its exit code, for start-ups meant to fail.
func (w *world) runServe(t *testing.T, extra map[string]string, more ...string) (string, int) {
	t.Helper()
	vars := map[string]string{"CRIER_HTTP_ADDR": "127.0.0.1:0"}
	for k, v := range w.env {
		vars[k] = v
	}
	for k, v := range extra {
		vars[k] = v
	}
	cmd := exec.Command(crierBin, "serve")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, more...)
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	done := make(chan struct{})
	timer := time.AfterFunc(30*time.Second, func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	close(done)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// TestMetricsListener: with an https public URL, /metrics is not on the
// main listener; CRIER_METRICS_ADDR serves it on its own.
func TestMetricsListener(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	https := map[string]string{"CRIER_PUBLIC_URL": "https://status.example.org"}
	p := w.start("crier-https", https)
	if code, _ := p.get("/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the main listener with an https public URL: %d, want 404", code)
	}
	if !strings.Contains(p.logs.String(), "CRIER_METRICS_ADDR") {
		t.Error("no start-up warning that metrics are not served")
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := "127.0.0.1:" + strconv.Itoa(port)
	q := w.start("crier-metrics", map[string]string{"CRIER_PUBLIC_URL": "https://status.example.org", "CRIER_METRICS_ADDR": metricsAddr})
	if code, _ := q.get("/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the main listener with CRIER_METRICS_ADDR set: %d, want 404", code)
	}
	resp, err := client.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "crier_") {
		t.Errorf("GET /metrics on CRIER_METRICS_ADDR: %d, want 200 with crier's metrics", resp.StatusCode)
	}
	// Plain http without CRIER_METRICS_ADDR: on the main listener.
	r := w.start("crier-http", nil)
	if code, body := r.get("/metrics"); code != http.StatusOK || !strings.Contains(body, "crier_") {
		t.Errorf("/metrics with an http public URL: %d, want 200", code)
	}
}
