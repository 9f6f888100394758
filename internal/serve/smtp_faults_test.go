package serve_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/crier-dev/crier/internal/serve"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/smtptest"
)

func manyEmailSubscribers(n int) []subscriber {
	out := make([]subscriber, n)
	for i := range out {
		out[i] = subscriber{label: fmt.Sprint(i), NewSubscriber: store.NewSubscriber{
			Email: fmt.Sprintf("manager%d@care.example", i), Components: []string{"atlas-sync"}, ConfirmEmail: true}}
	}
	return out
}

func TestSMTPTemporaryFailuresAreRetriedAndPermanentOnesRecorded(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t, smtptest.WithRcptHook(func(rcpt string, attempt int) *smtp.SMTPError {
		switch {
		case rcpt == "manager3@care.example":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such mailbox here"}
		case attempt == 1:
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Too busy, come back later"}
		case attempt == 2:
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error, try again"}
		}
		return nil
	}))
	c := start(t, map[string]string{"CRIER_SMTP_URL": srv.URL(), "CRIER_SMTP_POOL": "2"}, manyEmailSubscribers(8), serve.Options{})
	ev := incidenttest.Updates()[0]
	c.publish(t, ev)
	m := c.waitSettled(t, ev.ID)
	if m["email/sent"] != 7 || m["email/failed"] != 1 {
		t.Fatalf("states %v, want 7 sent and 1 failed", m)
	}
	for i := range 8 {
		addr := fmt.Sprintf("manager%d@care.example", i)
		want := 1
		if i == 3 {
			want = 0
		}
		if got := len(srv.MessagesTo(addr)); got != want {
			t.Errorf("%s received %d messages, want %d", addr, got, want)
		}
	}
	var code, lastErr string
	var attempts int
	if err := c.store.Pool().QueryRow(context.Background(),
		`SELECT error_code, last_error, attempts FROM deliveries WHERE address = 'manager3@care.example'`).Scan(&code, &lastErr, &attempts); err != nil {
		t.Fatal(err)
	}
	if code != "550" || !contains(lastErr, "No such mailbox here") {
		t.Errorf("550 delivery: code %q after %d attempts, error %q", code, attempts, lastErr)
	}
	// The 550 is final at once. An earlier attempt can only have been cut
	// short before manager3's own reply: sent in one group behind another
	// message's 421, after which the server closes the session.
	rows, err := c.store.Pool().Query(context.Background(), `
		SELECT a.outcome, coalesce(a.error_code, ''), coalesce(a.error, '') FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
		WHERE d.address = 'manager3@care.example' ORDER BY a.attempt`)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; rows.Next(); i++ {
		var outcome, code, msg string
		if err := rows.Scan(&outcome, &code, &msg); err != nil {
			t.Fatal(err)
		}
		t.Logf("manager3 attempt %d: %s %s %s", i+1, outcome, code, msg)
		if last := i == attempts-1; last != (outcome == "failed") || (!last && (code == "550" || contains(msg, "No such mailbox"))) {
			t.Errorf("manager3 attempt %d of %d: %s %s %q; want only the last failed, and no retry after its own 550", i+1, attempts, outcome, code, msg)
		}
	}
	rows.Close()
	var retries int
	if err := c.store.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM delivery_attempts WHERE outcome = 'retry' AND error_code IN ('421', '451')`).Scan(&retries); err != nil {
		t.Fatal(err)
	}
	if retries != 14 {
		t.Errorf("%d retried attempts with 421/451 recorded, want 14 (two for each of 7)", retries)
	}
}

func TestStalledSMTPServerSendsOnlyTheNewestUpdate(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t)
	srv.SetDown(true)
	c := start(t, map[string]string{"CRIER_SMTP_URL": srv.URL()}, manyEmailSubscribers(2), serve.Options{})
	updates := incidenttest.Updates()[3:6] // identified, monitoring, update
	for _, ev := range updates {
		c.publish(t, ev)
		waitFor(t, "fan-out of "+ev.ID, 10*time.Second, func() bool { return c.states(t, ev.ID)["email/queued"]+c.states(t, ev.ID)["email/sending"] > 0 })
	}
	// Deliveries that failed meanwhile are superseded when their attempt is
	// recorded; wait for the two older updates of both people.
	waitFor(t, "older updates superseded", 10*time.Second, func() bool { return c.states(t, "")["email/superseded"] == 4 })
	srv.SetDown(false)
	newest := updates[2]
	c.waitSettled(t, newest.ID)
	for i := range 2 {
		addr := fmt.Sprintf("manager%d@care.example", i)
		msgs := srv.MessagesTo(addr)
		if len(msgs) != 1 || !contains(string(msgs[0].Data), "[Update]") {
			t.Errorf("%s received %d messages, want only the newest update", addr, len(msgs))
		}
	}
}

func contains(s, sub string) bool { return len(s) >= len(sub) && indexOf(s, sub) >= 0 }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
