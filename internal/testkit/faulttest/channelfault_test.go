package faulttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/testkit/mailpittest"
	"github.com/crier-dev/crier/internal/testkit/twiliotest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files
// and returns their paths. The certificate is its own CA: a process given
// it as SSL_CERT_FILE trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// checkPaused waits for the channel of p to pause and checks that its
// deliveries of eventID are all still queued with no attempt charged.
func checkPaused(t *testing.T, w *world, p *proc, channel, eventID string) {
	t.Helper()
	waitFor(t, channel+" paused", 30*time.Second, func() bool {
		v, err := p.metric("crier_channel_up", `channel="`+channel+`"`)
		return err == nil && v == 0
	})
	// Long enough for a few probes to have failed too.
	time.Sleep(2 * time.Second)
	if n := w.count(`SELECT count(*) FROM deliveries WHERE event_id = $1 AND channel = $2 AND (state <> 'queued' OR attempts <> 0)`, eventID, channel); n != 0 {
		t.Errorf("%d %s deliveries failed, sent or charged an attempt while the channel was paused", n, channel)
	}
	if n := w.count(`SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.channel = $1`, channel); n != 0 {
		t.Errorf("%d %s attempts recorded while the channel was paused", n, channel)
	}
}

// checkResumed waits for every delivery of the channel to be sent and
// checks the pause was said once at each end.
func checkResumed(t *testing.T, w *world, p *proc, channel, eventID string, n int) {
	t.Helper()
	waitFor(t, channel+" sent after the fix", 90*time.Second, func() bool { return w.states(eventID)[channel+"/sent"] == n })
	if v, err := p.metric("crier_channel_up", `channel="`+channel+`"`); err != nil || v != 1 {
		t.Errorf("crier_channel_up{channel=%q} = %v (%v) after the fix, want 1", channel, v, err)
	}
	logs := p.logs.String()
	if a, b := strings.Count(logs, `"msg":"channel paused`), strings.Count(logs, `"msg":"channel resumed"`); a != 1 || b != 1 {
		t.Errorf("%d 'channel paused' and %d 'channel resumed' lines, want one each", a, b)
	}
}

// TestRelayWithoutSTARTTLSPausesEmail: CRIER_SMTP_URL requires STARTTLS and
// the relay (a real Mailpit) does not offer it. No email is sent in plain
// text, failed or charged an attempt; crier says why once, the dashboard
// shows it, crier_channel_up{channel="email"} is 0. Once Mailpit offers
// STARTTLS with a trusted certificate, on the same port, email resumes by
// itself and every email arrives.
func TestRelayWithoutSTARTTLSPausesEmail(t *testing.T) {
	exclusive(t)
	cert, key := selfSigned(t)
	plain := mailpittest.Start(t)
	w := newWorld(t, worldOptions{})
	subs := w.addSubscribers(5, "capa")
	p := w.start("crier", map[string]string{
		"CRIER_SMTP_URL": "smtp://127.0.0.1:" + strconv.Itoa(plain.SMTPPort),
		"SSL_CERT_FILE":  cert,
	})
	ev := newEvent("starttls-1", "inc-starttls", "capa")
	w.publish(ev)
	checkPaused(t, w, p, "email", ev.ID)
	if msgs, err := plain.Messages(t.Context()); err != nil || len(msgs) != 0 {
		t.Errorf("Mailpit without STARTTLS received %d messages (%v), want none", len(msgs), err)
	}
	code, page := p.do(http.MethodGet, "/admin", "", nil, http.Header{"Authorization": {"Bearer " + apiToken}})
	if code != http.StatusOK || !strings.Contains(page, "email is paused") || !strings.Contains(page, "STARTTLS") {
		t.Errorf("dashboard (%d) does not show the paused channel and its cause", code)
	}
	for _, s := range subs {
		if strings.Contains(page, s.email) {
			t.Errorf("the dashboard shows %s in full in the cause", s.email)
		}
	}

	plain.Stop()
	tls := mailpittest.StartWith(t, mailpittest.Options{SMTPPort: plain.SMTPPort, TLSCert: cert, TLSKey: key})
	checkResumed(t, w, p, "email", ev.ID, len(subs))
	msgs, err := tls.Messages(t.Context())
	if err != nil || len(msgs) != len(subs) {
		t.Errorf("Mailpit with STARTTLS received %d messages (%v), want %d", len(msgs), err, len(subs))
	}
}

// TestTwilioCredentialsRefusedPausesSMS: the Twilio test server answers
// 20003 (authentication) until the account is fixed, then 201. Texts stay
// queued with no attempt charged meanwhile, and all go once it answers.
func TestTwilioCredentialsRefusedPausesSMS(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	subs := w.addSubscribers(5, "capa")
	var broken atomic.Bool
	broken.Store(true)
	w.sinks.twilio.SetHook(func(to string, _ int) *twiliotest.Fault {
		if broken.Load() {
			return &twiliotest.Fault{Status: http.StatusUnauthorized, Code: 20003, Message: "Authenticate"}
		}
		w.sinks.mu.Lock()
		w.sinks.sms[to]++
		w.sinks.mu.Unlock()
		return nil
	})
	p := w.start("crier", nil)
	ev := newEvent("twilio-auth-1", "inc-twilio-auth", "capa")
	w.publish(ev)
	checkPaused(t, w, p, "sms", ev.ID)
	broken.Store(false)
	checkResumed(t, w, p, "sms", ev.ID, len(subs))
	if tl := w.sinks.tally(subs, 1); tl.missingSMS != 0 || tl.dupSMS != 0 {
		t.Errorf("after the fix: %s", tl)
	}
}
