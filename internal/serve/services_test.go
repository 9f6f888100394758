package serve

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder notes the order in which services return.
type recorder struct {
	mu    sync.Mutex
	order []string
}

func (r *recorder) service(name string, run func(soft context.Context)) *service {
	return newService(name, func(soft context.Context) error {
		run(soft)
		r.mu.Lock()
		r.order = append(r.order, name)
		r.mu.Unlock()
		return nil
	})
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

func testHTTP(t *testing.T, h http.Handler) *httpService {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &httpService{srv: &http.Server{Handler: h}, ln: ln, addr: ln.Addr().String(), done: make(chan struct{})}
}

// Intake stops first and each stage waits for the one before it: a request
// in flight finishes before the fan-out is told to stop, and the fan-out
// before the delivery workers.
func TestStopIsOrdered(t *testing.T) {
	t.Parallel()
	var r recorder
	inRequest := make(chan struct{})
	web := testHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(inRequest)
		time.Sleep(100 * time.Millisecond) // a slow publish
		r.mu.Lock()
		r.order = append(r.order, "request done")
		r.mu.Unlock()
	}))
	wait := func(soft context.Context) { <-soft.Done() }
	p := &parts{
		http:    web,
		fanout:  r.service("fan-out", wait),
		workers: []*service{r.service("deliver email", wait), r.service("deliver sms", wait)},
		listen:  r.service("listen", wait),
	}
	hard, kill := context.WithCancel(context.Background())
	defer kill()
	p.start(hard)
	go func() { _, _ = http.Get("http://" + web.addr) }()
	<-inRequest
	killed := false
	p.stop(slog.New(slog.DiscardHandler), 10*time.Second, func() { killed = true })
	got := r.got()
	if len(got) != 5 || got[0] != "request done" || got[1] != "fan-out" || got[4] != "listen" ||
		!slices.Contains(got[2:4], "deliver email") || !slices.Contains(got[2:4], "deliver sms") {
		t.Errorf("stopped in the order %q, want the request, fan-out, the workers, listen", got)
	}
	if killed {
		t.Error("work in flight was cut short although everything stopped within the grace")
	}
}

// A service still busy when the grace is over is cut short through the
// hard context, and stop returns.
func TestStopCutsShortAfterTheGrace(t *testing.T) {
	t.Parallel()
	var r recorder
	hard, kill := context.WithCancel(context.Background())
	defer kill()
	stubborn := func(context.Context) { <-hard.Done() } // ignores its own stop
	wait := func(soft context.Context) { <-soft.Done() }
	p := &parts{
		http:    testHTTP(t, http.NotFoundHandler()),
		fanout:  r.service("fan-out", wait),
		workers: []*service{r.service("deliver email", stubborn)},
		listen:  r.service("listen", wait),
	}
	p.start(hard)
	start := time.Now()
	p.stop(slog.New(slog.DiscardHandler), 200*time.Millisecond, kill)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop took %s", took)
	}
	if hard.Err() == nil {
		t.Fatal("the hard context was not cancelled after the grace")
	}
	if got := r.got(); !slices.Contains(got, "deliver email") {
		t.Errorf("services that returned: %q, want the stubborn worker among them once cut short", got)
	}
}
