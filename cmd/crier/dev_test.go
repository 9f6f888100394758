package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/config"
	"github.com/crier-dev/crier/internal/devenv"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
	"github.com/crier-dev/crier/internal/testkit/proctest"
	"github.com/crier-dev/crier/internal/testkit/tcpproxy"
)

// buildCrier builds the crier binary into a temporary directory.
func buildCrier(t *testing.T) string {
	t.Helper()
	bin, err := proctest.Build(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// childEnv is the test's environment without CRIER_* settings, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CRIER_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// eventually polls f until it returns true or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := f()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func httpGet(u string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestDev runs `crier dev` as a person would, against a fresh database
// reached through a proxy that can cut it off: it becomes ready, an event
// published with `crier publish` reaches the outbox and the metrics,
// readiness follows PostgreSQL going away and coming back, Ctrl-C stops it
// cleanly, and its output never shows a subscriber's address or number.
func TestDev(t *testing.T) {
	t.Parallel()
	bin := buildCrier(t)

	server, err := url.Parse(pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := tcpproxy.New(t, server.Host)
	dbURL, err := url.Parse(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	dbURL.Host = proxy.Addr()
	dataDir := t.TempDir()

	var stdout, stderr proctest.Output
	cmd := exec.Command(bin, "dev", "--dir", dataDir, "--nats-port", "0")
	cmd.Env = childEnv(
		"CRIER_DATABASE_URL="+dbURL.String(),
		"CRIER_HTTP_ADDR=127.0.0.1:0",
		"CRIER_LOG_LEVEL=debug",
	)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("crier dev stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
	})

	// The banner names the URLs to open and the publish command to try.
	eventually(t, 60*time.Second, "crier dev prints its banner", func() (bool, string) {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("crier dev exited early: %v", err)
		default:
		}
		return strings.Contains(stdout.String(), "Ctrl-C stops everything"), stderr.String()
	})
	banner := stdout.String()
	base := regexp.MustCompile(`outbox\s+(http://127\.0\.0\.1:\d+)/dev/outbox`).FindStringSubmatch(banner)
	natsURL := regexp.MustCompile(`CRIER_NATS_URL=(nats://127\.0\.0\.1:\d+) `).FindStringSubmatch(banner)
	if base == nil || natsURL == nil {
		t.Fatalf("banner lacks the outbox URL or the publish command:\n%s", banner)
	}
	h := base[1]
	for _, want := range []string{h + "/readyz", h + "/metrics", bin + " publish", "--component atlas-sync/sync-pod-a", "captured in the outbox", "CRIER_DATABASE_URL"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "nats", "jetstream")); err != nil {
		t.Errorf("no JetStream data under --dir: %v", err)
	}

	eventually(t, 30*time.Second, "/readyz answers 200", func() (bool, string) {
		code, body, err := httpGet(h + "/readyz")
		return code == http.StatusOK, body + errString(err)
	})
	if out, err := exec.Command(bin, "healthcheck", "--url", h+"/readyz").CombinedOutput(); err != nil {
		t.Errorf("crier healthcheck while ready: %v\n%s", err, out)
	}

	// Publish the first update of the Sync Pod A incident, as the banner
	// suggests: Alex (email and SMS, through atlas-sync) and Sam (email) are
	// told, Jo (capa, emar) is not.
	pub := exec.Command(bin, "publish", "--id", "dev-test-0001", "--incident-id", "2025-11-10-atlas-sync",
		"--status", "investigating", "--impact", "major", "--title", "Atlas Device Synchronisation Issues",
		"--body", "Some users are experiencing sync issues on Sync Pod A.", "--component", "atlas-sync/sync-pod-a")
	pub.Env = childEnv("CRIER_NATS_URL=" + natsURL[1])
	if out, err := pub.CombinedOutput(); err != nil || !strings.Contains(string(out), "published dev-test-0001") {
		t.Fatalf("crier publish: %v\n%s", err, out)
	}

	type item struct {
		ID       int64
		Channel  string
		To       string
		Subject  string
		Segments int
	}
	var outbox struct {
		Count int
		Items []item
	}
	eventually(t, 30*time.Second, "three messages in the outbox", func() (bool, string) {
		_, body, err := httpGet(h + "/dev/outbox.json")
		if err != nil {
			return false, err.Error()
		}
		if err := json.Unmarshal([]byte(body), &outbox); err != nil {
			return false, err.Error()
		}
		return outbox.Count == 3, body
	})
	got := map[string]item{}
	for _, it := range outbox.Items {
		got[it.Channel+" "+it.To] = it
	}
	alexEmail, ok1 := got["email manager@oakview-care.example"]
	_, ok2 := got["email deputy@riverside-care.example"]
	alexSMS, ok3 := got["sms +447400123456"]
	if !ok1 || !ok2 || !ok3 || !strings.Contains(alexEmail.Subject, "Atlas Device Synchronisation Issues") || alexSMS.Segments < 1 {
		t.Fatalf("outbox: %+v", outbox.Items)
	}
	code, page, err := httpGet(h + "/dev/outbox")
	if err != nil || code != http.StatusOK || !strings.Contains(page, "Atlas Device Synchronisation Issues") || !strings.Contains(page, "3 captured") {
		t.Errorf("outbox page: %d %v\n%s", code, err, page)
	}
	if _, page, _ := httpGet(h + "/dev/outbox/" + itoa(alexEmail.ID)); !strings.Contains(page, "<iframe sandbox=") {
		t.Errorf("email page has no sandboxed frame:\n%s", page)
	}
	if code, html, _ := httpGet(h + "/dev/outbox/" + itoa(alexEmail.ID) + "/html"); code != http.StatusOK || !strings.Contains(html, "Sync Pod A") {
		t.Errorf("email HTML: %d\n%s", code, html)
	}
	if _, page, _ := httpGet(h + "/dev/outbox/" + itoa(alexSMS.ID)); !strings.Contains(page, "segment") {
		t.Errorf("text page shows no segment count:\n%s", page)
	}

	eventually(t, 30*time.Second, "metrics show the event and the sends", func() (bool, string) {
		_, body, err := httpGet(h + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		for _, re := range []string{
			`(?m)^crier_events_fanned_out_total 1$`,
			`(?m)^crier_deliveries_total\{channel="email",outcome="sent"\} 2$`,
			`(?m)^crier_deliveries_total\{channel="sms",outcome="sent"\} 1$`,
			`(?m)^crier_queue_depth\{channel="email"\} 0$`,
			`(?m)^crier_queue_stats_up 1$`,
			`(?m)^crier_jetstream_consumer_pending_messages\{consumer="crier-fanout",stream="INCIDENTS"\} 0$`,
			`(?m)^crier_jetstream_consumer_up 1$`,
		} {
			if !regexp.MustCompile(re).MatchString(body) {
				return false, "no match for " + re
			}
		}
		return true, ""
	})

	// PostgreSQL goes away and comes back: readiness follows.
	proxy.SetDown(true)
	eventually(t, 20*time.Second, "/readyz unready with PostgreSQL down", func() (bool, string) {
		code, body, err := httpGet(h + "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "postgresql"), body + errString(err)
	})
	if err := exec.Command(bin, "healthcheck", "--url", h+"/readyz").Run(); err == nil {
		t.Error("crier healthcheck succeeded while PostgreSQL was down")
	}
	if _, body, _ := httpGet(h + "/metrics"); !regexp.MustCompile(`(?m)^crier_queue_stats_up 0$`).MatchString(body) {
		t.Error("metrics do not report the queue statistics as unavailable")
	}
	proxy.SetDown(false)
	eventually(t, 30*time.Second, "/readyz ready again", func() (bool, string) {
		code, body, err := httpGet(h + "/readyz")
		return code == http.StatusOK, body + errString(err)
	})

	// Ctrl-C stops everything cleanly.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("crier dev exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("crier dev did not stop within 60s of SIGINT")
	}
	logs := stderr.String()
	for _, want := range []string{"event fanned out", "delivery batch recorded", "sent=2", "stopped cleanly", "crier dev stopped", "level=INFO", "m***@oakview-care.example"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	all := stdout.String() + logs
	for _, s := range example.Subscribers() {
		for _, addr := range []string{s.Email, s.Phone} {
			if addr != "" && strings.Contains(all, addr) {
				t.Errorf("output shows %q unmasked", addr)
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestDevSenders: provider settings replace the outbox for their channel
// only.
func TestDevSenders(t *testing.T) {
	t.Parallel()
	outbox := devenv.NewOutbox(devenv.OutboxConfig{})
	for _, tc := range []struct {
		env      map[string]string
		captured []string
	}{
		{map[string]string{}, []string{"email", "sms"}},
		{map[string]string{"CRIER_SMTP_URL": "smtp://127.0.0.1:1025?tls=none", "CRIER_MAIL_FROM": "status@crier.example"}, []string{"sms"}},
		{map[string]string{"CRIER_TWILIO_ACCOUNT_SID": "AC123", "CRIER_TWILIO_AUTH_TOKEN": "x", "CRIER_TWILIO_FROM": "+447400123999"}, []string{"email"}},
	} {
		cfg, err := config.Load(func(k string) string { return tc.env[k] })
		if err != nil {
			t.Fatal(err)
		}
		senders, channels := devSenders(cfg, outbox)
		if len(senders) != len(tc.captured) {
			t.Errorf("%v: %d capturing senders, want %v", tc.env, len(senders), tc.captured)
		}
		for _, ch := range tc.captured {
			if senders[ch] == nil || channels[ch] != "captured in the outbox" {
				t.Errorf("%v: %s is not captured (%q)", tc.env, ch, channels[ch])
			}
		}
		for ch, how := range channels {
			if senders[ch] == nil && !strings.HasPrefix(how, "sent by") {
				t.Errorf("%v: %s: %q", tc.env, ch, how)
			}
		}
	}
}
