package faulttest

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// paceOf measures the pace of arrivals at a token bucket of rate per second
// with a burst of one second's worth: the steady rate after the burst, and
// the most arrivals within any one second.
func paceOf(at []time.Time, rate float64) (steady float64, busiest int) {
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	burst := int(rate)
	if len(at) <= burst+1 {
		return 0, len(at)
	}
	steady = float64(len(at)-burst) / at[len(at)-1].Sub(at[0]).Seconds()
	j := 0
	for i := range at {
		for at[i].Sub(at[j]) >= time.Second {
			j++
		}
		busiest = max(busiest, i-j+1)
	}
	return steady, busiest
}

// checkPace fails the test unless the arrivals kept rate within 5 % and
// never ran ahead of the token bucket: by any arrival's time t, at most a
// burst (one second's worth) plus rate × (t − published) messages can have
// been claimed, since no claim came before the publish. extra allows for
// messages a killed process sent without recording them, which go out
// again once their lease expires.
func checkPace(t *testing.T, what string, at []time.Time, rate float64, published time.Time, extra int) {
	t.Helper()
	steady, busiest := paceOf(at, rate)
	t.Logf("%s: %d messages, steady %.2f/s, busiest second %d (rate %v/s)", what, len(at), steady, busiest, rate)
	if steady > rate*1.05 || steady < rate*0.95 {
		t.Errorf("%s: %.2f/s together, want %v/s within 5%%", what, steady, rate)
	}
	burst := max(1, rate)
	// margin is the least room left under the bound; at is sorted (paceOf).
	margin := burst + float64(extra)
	for i, a := range at {
		allowed := burst + rate*a.Sub(published).Seconds() + float64(extra)
		margin = min(margin, allowed-float64(i+1))
		if float64(i+1) > allowed+1 {
			t.Errorf("%s: %d messages %s after the publish, more than a burst of %v and %v/s allow (%.0f)",
				what, i+1, a.Sub(published).Round(time.Millisecond), burst, rate, allowed)
			return
		}
	}
	t.Logf("%s: at its closest, %.1f messages under what the bucket allows", what, margin)
}

// TestRateHoldsAcrossProcesses runs three `crier serve` processes against
// one PostgreSQL and NATS with CRIER_SMS_RATE=10: together they send 10
// texts a second, not 30, and everyone gets exactly one. Then the same with
// CRIER_EMAIL_RATE=200.
func TestRateHoldsAcrossProcesses(t *testing.T) {
	exclusive(t)
	for _, c := range []struct {
		channel string
		rate    float64
		subs    int
	}{{"sms", 10, 150}, {"email", 200, 3000}} {
		t.Run(c.channel, func(t *testing.T) {
			w := newWorld(t, worldOptions{})
			subs := w.addSubscribers(c.subs, "capa")
			env := map[string]string{"CRIER_SMS_RATE": "0", "CRIER_EMAIL_RATE": "0"}
			env["CRIER_"+strings.ToUpper(c.channel)+"_RATE"] = strconv.FormatFloat(c.rate, 'f', -1, 64)
			for i := range 3 {
				w.start(fmt.Sprintf("crier-%d", i), env)
			}
			ev := newEvent("scale-"+c.channel, "inc-scale-"+c.channel, "capa")
			published := time.Now()
			w.publish(ev)
			w.waitSettled(3*time.Minute, 2*c.subs, ev.ID)
			tl := w.sinks.tally(subs, 1)
			if tl.missingEmail+tl.missingSMS+tl.dups() != 0 {
				t.Errorf("three paced processes: %s; want everyone exactly once", tl)
			}
			checkPace(t, c.channel+" from three processes", w.sinks.arrivals(c.channel), c.rate, published, 0)
		})
	}
}

// TestRateHoldsWhenAProcessDies: three processes at CRIER_SMS_RATE=10 (then
// CRIER_EMAIL_RATE=200), one SIGKILLed halfway. The two left keep the
// deployment's rate (the dead one held no share of it), and what it held is
// sent once its lease expires: everyone is reached, and only what it held
// can have been sent twice.
func TestRateHoldsWhenAProcessDies(t *testing.T) {
	exclusive(t)
	for _, c := range []struct {
		channel string
		rate    float64
		subs    int
	}{{"sms", 10, 200}, {"email", 200, 4000}} {
		t.Run(c.channel, func(t *testing.T) {
			w := newWorld(t, worldOptions{})
			subs := w.addSubscribers(c.subs, "capa")
			env := map[string]string{"CRIER_SMS_RATE": "0", "CRIER_EMAIL_RATE": "0", "CRIER_LEASE": "3s"}
			env["CRIER_"+strings.ToUpper(c.channel)+"_RATE"] = strconv.FormatFloat(c.rate, 'f', -1, 64)
			var procs []*proc
			for i := range 3 {
				procs = append(procs, w.start(fmt.Sprintf("crier-%d", i), env))
			}
			ev := newEvent("scale-kill-"+c.channel, "inc-scale-kill-"+c.channel, "capa")
			published := time.Now()
			w.publish(ev)
			waitFor(t, "half the messages", time.Minute, func() bool { return w.states(ev.ID)[c.channel+"/sent"] >= c.subs/2 })
			procs[1].kill()
			held := w.leased()
			t.Logf("the killed process held %d deliveries", len(held))
			w.waitSettled(3*time.Minute, 2*c.subs, ev.ID)
			tl := w.sinks.tally(subs, 1)
			t.Logf("sinks: %s", tl)
			if tl.missingEmail+tl.missingSMS != 0 {
				t.Errorf("some subscribers were never reached: %s", tl)
			}
			if tl.dups() > len(held) {
				t.Errorf("%d duplicates, more than the %d deliveries held when the process died", tl.dups(), len(held))
			}
			checkPace(t, c.channel+", one of three processes killed halfway", w.sinks.arrivals(c.channel), c.rate, published, len(held))
		})
	}
}

// TestSMSCodeLimitAcrossProcesses: the subscribe page's limit on texted
// codes per phone number holds across processes: three codes to one
// number, whichever process serves the form, then 429 from all of them.
func TestSMSCodeLimitAcrossProcesses(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{keepMessages: true})
	procs := []*proc{w.start("crier-a", nil), w.start("crier-b", nil)}
	const num = "+447400123999"
	subscribe := func(p *proc) int {
		t.Helper()
		body := url.Values{"phone": {num}, "components": {"capa"}}.Encode()
		code, _ := p.do(http.MethodPost, "/subscribe", "application/x-www-form-urlencoded", strings.NewReader(body), nil)
		return code
	}
	var codes []int
	for i := range 6 {
		codes = append(codes, subscribe(procs[i%2]))
	}
	want := []int{200, 200, 200, 429, 429, 429}
	if !slices.Equal(codes, want) {
		t.Errorf("six subscriptions of one number, alternating between two processes: %v, want %v", codes, want)
	}
	if n := w.sinks.twilio.Accepted(); n != 3 {
		t.Errorf("%d texts sent to the number, want 3", n)
	}
}
