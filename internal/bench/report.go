package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// Print writes the summary of a run.
func (r Report) Print(w io.Writer) {
	c := r.Config
	channels := ""
	if c.Email {
		channels += "email "
	}
	if c.SMS {
		channels += "sms"
	}
	fmt.Fprintf(w, "crier-bench: %d subscribers (%s), %d event(s), SMTP latency %s, Twilio latency %s, SMTP pool %d, workers %d, email rate %g/s, SMS rate %g/s\n",
		c.Subscribers, channels, len(r.Events), c.SMTPLatency, c.TwilioLatency, c.SMTPPool, c.Workers, c.EmailRate, c.SMSRate)
	fmt.Fprintf(w, "load: %s\n", r.LoadTime.Round(time.Millisecond))
	if c.AnalyzeEmpty > 0 {
		fmt.Fprintf(w, "queue analyzed empty, then %s idle before the first event\n", c.AnalyzeEmpty)
	}
	var firsts, lasts []time.Duration
	problems := 0
	for i, e := range r.Events {
		if len(r.Events) <= 3 {
			fmt.Fprintf(w, "event %d: %d/%d accepted, missing %d, doubled %d; fan-out %s; first %s, last %s, p50 %s, p99 %s; %.0f deliveries/s\n",
				i+1, e.Accepted, e.Expected, e.Missing, e.Doubled, round(e.FanOut), round(e.First), round(e.Last), round(e.P50), round(e.P99), rate(e.Accepted, e.Last))
			for ch, cr := range e.PerChannel {
				fmt.Fprintf(w, "  %s: %d accepted, first %s, last %s, %.0f/s from publish, %.0f/s sustained (first to last)\n",
					ch, cr.Accepted, round(cr.First), round(cr.Last), rate(cr.Accepted, cr.Last), rate(cr.Accepted-1, cr.Last-cr.First))
			}
			if c := e.Critical; c != nil {
				fmt.Fprintf(w, "  critical incident to %d subscribers, published %s into the maintenance notice:", r.Config.Critical, round(c.After))
				for _, ch := range slices.Sorted(maps.Keys(c.Reached)) {
					fmt.Fprintf(w, " %s all reached %s after its publish;", ch, round(c.Reached[ch]))
				}
				fmt.Fprintf(w, " %d maintenance messages still to come then, %d critical never reached\n", c.Behind, c.Missing)
				problems += c.Missing
			}
		}
		firsts = append(firsts, e.First)
		lasts = append(lasts, e.Last)
		problems += e.Missing + e.Doubled
	}
	if len(r.Events) > 1 {
		slices.Sort(firsts)
		slices.Sort(lasts)
		fmt.Fprintf(w, "over %d events: first delivery median %s (min %s, max %s); last delivery median %s\n",
			len(r.Events), round(firsts[len(firsts)/2]), round(firsts[0]), round(firsts[len(firsts)-1]), round(lasts[len(lasts)/2]))
	}
	per1000 := func(cpu time.Duration) float64 {
		if r.Deliveries <= 0 {
			return 0
		}
		return (cpu * 1000 / time.Duration(r.Deliveries)).Seconds()
	}
	if r.DBCPUNote == "" {
		fmt.Fprintf(w, "CPU (this process: crier, NATS, sinks): %s, %.3f s per 1,000 deliveries\n", round(r.CPU), per1000(r.CPU))
		fmt.Fprintf(w, "CPU (PostgreSQL, all local postgres processes): %s, %.3f s per 1,000 deliveries\n", round(r.DBCPU), per1000(r.DBCPU))
		fmt.Fprintf(w, "CPU total: %s, %.3f s per 1,000 deliveries\n", round(r.CPU+r.DBCPU), per1000(r.CPU+r.DBCPU))
	} else {
		fmt.Fprintf(w, "CPU (this process: crier, NATS, sinks; PostgreSQL not counted): %s, %.3f s per 1,000 deliveries\n", round(r.CPU), per1000(r.CPU))
		fmt.Fprintf(w, "PostgreSQL CPU: not measured (%s)\n", r.DBCPUNote)
	}
	fmt.Fprintf(w, "peak RSS (this process): %.1f MB\n", float64(r.PeakRSS)/(1<<20))
	if problems == 0 {
		fmt.Fprintln(w, "check: every expected delivery accepted exactly once")
	} else {
		fmt.Fprintf(w, "check: FAILED, %d missing or doubled\n", problems)
	}
}

func round(d time.Duration) time.Duration {
	switch {
	case d > 10*time.Second:
		return d.Round(10 * time.Millisecond)
	case d > time.Second:
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// OK reports whether every event was delivered exactly once.
func (r Report) OK() bool {
	for _, e := range r.Events {
		if e.Missing != 0 || e.Doubled != 0 || (e.Critical != nil && e.Critical.Missing != 0) {
			return false
		}
	}
	return len(r.Events) > 0
}
