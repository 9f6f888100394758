// Package sink holds the loopback provider servers of the end-to-end
// benchmark (cmd/crier-bench): an SMTP server that accepts and discards,
// and a server speaking Twilio's create-message REST wire format. Both are
// written by hand for speed, so their own CPU blurs crier's as little as
// possible, and count what they accepted per recipient (Tally) so that the
// bench can prove every message arrived exactly once. The test servers
// (smtptest, twiliotest) are the faithful ones, built on go-smtp and
// net/http; the two kinds share no code because sharing would cost the
// sinks their speed.
package sink

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Tally counts what a sink accepted, per recipient, and when. Recipients
// are numbered (manager<i>@…, +4474<i>), so counts live in a slice indexed
// by number: the bench's own memory stays small and flat as N grows, and
// the process's peak RSS speaks about crier.
type Tally struct {
	mu     sync.Mutex
	start  time.Time
	counts []uint8  // by recipient number
	times  []uint32 // microseconds since start, one per accepted message
	bad    int      // recipients that are not bench recipients
	total  atomic.Int64
	// watchFrom, when positive, is the first recipient number whose first
	// arrival is kept in arrived (microseconds since start).
	watchFrom int
	arrived   map[int]uint32
}

// Watch keeps the first arrival of every recipient numbered from on (a
// few, such as the subscribers of a critical incident); see Arrivals.
func (t *Tally) Watch(from int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.watchFrom, t.arrived = from, map[int]uint32{}
}

// Arrivals returns, by recipient number, when each watched recipient's
// first message arrived, since the start of the measurement.
func (t *Tally) Arrivals() map[int]time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[int]time.Duration, len(t.arrived))
	for i, us := range t.arrived {
		out[i] = time.Duration(us) * time.Microsecond
	}
	return out
}

// NewTally returns a Tally for recipients numbered 0 to n.
func NewTally(n int) *Tally {
	return &Tally{counts: make([]uint8, n+1), times: make([]uint32, 0, n)}
}

// Reset starts a new measurement at start.
func (t *Tally) Reset(start time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start = start
	t.total.Store(0)
	clear(t.counts)
	t.times = t.times[:0]
	t.bad = 0
	if t.arrived != nil {
		clear(t.arrived)
	}
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

func (t *Tally) accept(rcpt string) {
	now := time.Now()
	i := recipientNumber(rcpt)
	t.mu.Lock()
	if i < 0 || i >= len(t.counts) {
		t.bad++
	} else if t.counts[i] < 255 {
		t.counts[i]++
	}
	at := uint32(now.Sub(t.start).Microseconds())
	t.times = append(t.times, at)
	if t.watchFrom > 0 && i >= t.watchFrom {
		if _, ok := t.arrived[i]; !ok {
			t.arrived[i] = at
		}
	}
	t.mu.Unlock()
	t.total.Add(1)
}

// Snapshot returns the accepted count, distinct recipients and doubles.
func (t *Tally) Snapshot() (accepted, distinct, doubled int) {
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

func (t *Tally) Latencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Duration, len(t.times))
	for i, us := range t.times {
		out[i] = time.Duration(us) * time.Microsecond
	}
	return out
}

// sinkServer accepts connections and serves each in a goroutine of its
// own. It tracks them so that close can end them all and wait: a bench
// run must not leave a sink's goroutines behind, nor its connections.
type sinkServer struct {
	ln   net.Listener
	done chan struct{} // closed by close, ends latency waits

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and one per connection
}

// start serves ln until close, calling serve for each connection; the
// connection is closed when serve returns.
func (s *sinkServer) start(ln net.Listener, serve func(net.Conn)) {
	s.ln = ln
	s.done = make(chan struct{})
	s.conns = map[net.Conn]struct{}{}
	s.wg.Add(1)
	go s.acceptLoop(serve)
}

// close stops accepting, closes every open connection and waits until
// their goroutines have ended.
func (s *sinkServer) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		_ = s.ln.Close()
		for c := range s.conns {
			_ = c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *sinkServer) acceptLoop(serve func(net.Conn)) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil { // out of file descriptors, say: try again
			time.Sleep(5 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1) // the counter is not zero: this loop holds one
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				_ = c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			serve(c)
		}()
	}
}

// Tally is what the SMTP sink accepted.
func (s *SMTP) Tally() *Tally { return s.tally }

// Tally is what the Twilio sink accepted.
func (s *Twilio) Tally() *Tally { return s.tally }

// Total is the number of messages accepted since the last Reset.
func (t *Tally) Total() int64 { return t.total.Load() }
