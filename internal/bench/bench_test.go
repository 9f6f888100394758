package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestSmallRun runs the whole benchmark on a few subscribers so that a
// change that breaks crier-bench fails CI.
func TestSmallRun(t *testing.T) {
	rep, err := Run(context.Background(), Config{
		ServerURL: pgtest.ServerURL(), Subscribers: 40, Email: true, SMS: true, Events: 2,
		SMTPPool: 4, Workers: 8, Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Events) != 2 {
		t.Fatalf("report: %+v", rep.Events)
	}
	for _, e := range rep.Events {
		if e.Accepted != 80 || e.Missing != 0 || e.Doubled != 0 || e.First <= 0 || e.Last < e.First {
			t.Errorf("event result %+v", e)
		}
	}
	var out bytes.Buffer
	rep.Print(&out)
	for _, want := range []string{"40 subscribers", "first delivery median", "peak RSS", "every expected delivery accepted exactly once"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(out.String(), "CPU (PostgreSQL, all local postgres processes): ") && !strings.Contains(out.String(), "PostgreSQL CPU: not measured (") {
		t.Errorf("summary says nothing of PostgreSQL's CPU:\n%s", out.String())
	}
}
