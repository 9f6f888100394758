package bench

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// tally counts what a sink accepted, per recipient, and when. Recipients
// are numbered (manager<i>@…, +4474<i>), so counts live in a slice indexed
// by number: the bench's own memory stays small and flat as N grows, and
// the process's peak RSS speaks about crier.
type tally struct {
	mu     sync.Mutex
	start  time.Time
	counts []uint8  // by recipient number
	times  []uint32 // microseconds since start, one per accepted message
	bad    int      // recipients that are not bench recipients
	total  atomic.Int64
}

func newTally(n int) *tally {
	return &tally{counts: make([]uint8, n+1), times: make([]uint32, 0, n)}
}

// reset starts a new measurement at start.
func (t *tally) reset(start time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start = start
	t.total.Store(0)
	clear(t.counts)
	t.times = t.times[:0]
	t.bad = 0
}

// recipientNumber extracts i from manager<i>@… or +4474<8 digits>.
func recipientNumber(rcpt string) int {
	digits := rcpt
	switch {
	case strings.HasPrefix(rcpt, "manager"):
		digits = rcpt[len("manager"):]
		if at := strings.IndexByte(digits, '@'); at >= 0 {
			digits = digits[:at]
		}
	case strings.HasPrefix(rcpt, "+4474"):
		digits = rcpt[len("+4474"):]
	default:
		return -1
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return -1
	}
	return n
}

func (t *tally) accept(rcpt string) {
	now := time.Now()
	i := recipientNumber(rcpt)
	t.mu.Lock()
	if i < 0 || i >= len(t.counts) {
		t.bad++
	} else if t.counts[i] < 255 {
		t.counts[i]++
	}
	t.times = append(t.times, uint32(now.Sub(t.start).Microseconds()))
	t.mu.Unlock()
	t.total.Add(1)
}

// snapshot returns the accepted count, distinct recipients and doubles.
func (t *tally) snapshot() (accepted, distinct, doubled int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range t.counts {
		if n > 0 {
			distinct++
			accepted += int(n)
			doubled += int(n - 1)
		}
	}
	return accepted + t.bad, distinct, doubled + t.bad
}

func (t *tally) latencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Duration, len(t.times))
	for i, us := range t.times {
		out[i] = time.Duration(us) * time.Microsecond
	}
	return out
}

// smtpSink is an SMTP server that accepts and discards every message after
// an optional delay, counting recipients.
type smtpSink struct {
	srv     *smtp.Server
	ln      net.Listener
	tally   *tally
	latency time.Duration
}

func startSMTPSink(latency time.Duration, n int) (*smtpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &smtpSink{ln: ln, tally: newTally(n), latency: latency}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: s}, nil }))
	s.srv.Domain = "sink.bench"
	s.srv.AllowInsecureAuth = true
	s.srv.MaxRecipients = 10
	s.srv.ReadTimeout, s.srv.WriteTimeout = time.Minute, time.Minute
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *smtpSink) url() string { return "smtp://" + s.ln.Addr().String() + "?tls=none" }

func (s *smtpSink) close() { _ = s.srv.Close() }

type sinkSession struct {
	sink  *smtpSink
	rcpts []string
}

func (x *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (x *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.rcpts = append(x.rcpts, to)
	return nil
}
func (x *sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if x.sink.latency > 0 {
		time.Sleep(x.sink.latency)
	}
	for _, to := range x.rcpts {
		x.sink.tally.accept(to)
	}
	x.rcpts = x.rcpts[:0]
	return nil
}
func (x *sinkSession) Reset()        { x.rcpts = x.rcpts[:0] }
func (x *sinkSession) Logout() error { return nil }

// twilioSink answers Twilio's create-message request with 201 and a
// Message resource after an optional delay, counting recipients.
type twilioSink struct {
	srv     *http.Server
	ln      net.Listener
	tally   *tally
	latency time.Duration
}

func startTwilioSink(latency time.Duration, n int) (*twilioSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &twilioSink{ln: ln, tally: newTally(n), latency: latency}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2010-04-01/Accounts/{sid}/Messages.json", s.create)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(err)
		}
	}()
	return s, nil
}

func (s *twilioSink) url() string { return "http://" + s.ln.Addr().String() }

func (s *twilioSink) close() { _ = s.srv.Close() }

func (s *twilioSink) create(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, `{"code":21602,"message":"bad form","status":400}`, http.StatusBadRequest)
		return
	}
	if s.latency > 0 {
		time.Sleep(s.latency)
	}
	to := r.PostForm.Get("To")
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"sid": "SM" + hex.EncodeToString(b), "account_sid": r.PathValue("sid"), "to": to,
		"from": r.PostForm.Get("From"), "body": r.PostForm.Get("Body"), "status": "queued", "num_segments": "1",
	})
	s.tally.accept(to)
}
