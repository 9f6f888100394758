package faulttest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/event"
)

// natsOutage is how long NATS is stopped.
const natsOutage = 20 * time.Second

// answer is the API's answer to one POST /v1/events.
type answer struct {
	id         string
	code       int
	body       string
	start, end time.Time
}

// TestNATSOutageWhilePublishing stops NATS for 20 seconds while publishers
// keep calling POST /v1/events and the workers run. The API answers 503 while
// JetStream cannot acknowledge (and never 202 for an event it did not
// store: every 202 ends up stored and delivered), the process reconnects by
// itself (/readyz back to 200, no restart), and every event acknowledged
// before, during or after the outage is delivered.
func TestNATSOutageWhilePublishing(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	subs := w.addSubscribers(5, "capa")
	p := w.start("crier", nil)

	var (
		mu      sync.Mutex
		answers []answer
		seq     atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := seq.Add(1)
				// One incident per event, so that none supersedes another.
				ev := newEvent(fmt.Sprintf("nats-%04d", n), fmt.Sprintf("inc-nats-%04d", n), "capa")
				raw, err := event.Encode(ev)
				if err != nil {
					panic(err)
				}
				a := answer{id: ev.ID, start: time.Now()}
				a.code, a.body = p.postEvent(raw)
				a.end = time.Now()
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
				select { // each publisher posts about 5 events a second
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		})
	}
	accepted := func(after time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range answers {
			if a.code == http.StatusAccepted && a.start.After(after) {
				n++
			}
		}
		return n
	}
	waitFor(t, "10 events accepted before the outage", 30*time.Second, func() bool { return accepted(time.Time{}) >= 10 })

	down := time.Now()
	w.nats.Stop()
	waitFor(t, "/readyz to report NATS down", 15*time.Second, func() bool {
		code, body := p.get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "nats")
	})
	// The outage itself: NATS stays down this long.
	time.Sleep(time.Until(down.Add(natsOutage)))
	w.nats.Restart(t)
	up := time.Now()
	t.Logf("NATS down for %s", up.Sub(down).Round(time.Millisecond))
	waitFor(t, "/readyz to recover without a restart", 30*time.Second, func() bool {
		code, _ := p.get("/readyz")
		return code == http.StatusOK
	})
	waitFor(t, "10 events accepted after the outage", 60*time.Second, func() bool { return accepted(up) >= 10 })
	close(stop)
	wg.Wait()
	if !p.running() {
		t.Fatal("crier exited during the NATS outage")
	}

	var ok, unavailable, during503 []string
	for _, a := range answers {
		switch a.code {
		case http.StatusAccepted:
			ok = append(ok, a.id)
			if a.start.After(down.Add(time.Second)) && a.end.Before(up) {
				t.Errorf("%s answered 202 at %s although NATS was down from %s to %s",
					a.id, a.end.Sub(down).Round(time.Millisecond), "0s", up.Sub(down).Round(time.Millisecond))
			}
		case http.StatusServiceUnavailable:
			unavailable = append(unavailable, a.id)
			if a.start.After(down) && a.end.Before(up) {
				during503 = append(during503, a.id)
			}
		default:
			t.Errorf("%s: answer %d %s, want 202 or 503", a.id, a.code, a.body)
		}
	}
	t.Logf("%d events answered: %d accepted, %d unavailable (%d wholly within the outage)",
		len(answers), len(ok), len(unavailable), len(during503))
	if len(during503) == 0 {
		t.Error("no request made during the outage was answered 503")
	}

	// Every accepted event is stored and delivered, and so is any event
	// answered 503 that JetStream did store after all (a publish flushed
	// on reconnect): 503 only promises "maybe not stored".
	w.waitSettled(2*time.Minute, 2*len(subs)*len(ok), ok...)
	stored := w.count(`SELECT count(*) FROM events`)
	w.waitSettled(time.Minute, 2*len(subs)*stored)
	got := w.states()
	if got["email/sent"] != len(subs)*stored || got["sms/sent"] != len(subs)*stored {
		t.Errorf("deliveries %v; want %d sent per channel for %d stored events", got, len(subs)*stored, stored)
	}
	if tl := w.sinks.tally(subs, stored); tl.missingEmail+tl.missingSMS+tl.dups() != 0 {
		t.Errorf("sinks: %s; want %d messages per subscriber and channel", tl, stored)
	}
	t.Logf("%d events stored (%d accepted with 202); all delivered once", stored, len(ok))
}
