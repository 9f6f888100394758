//go:build linux

package email_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/email"
	"github.com/crier-dev/crier/internal/testkit/mailpittest"
	"github.com/crier-dev/crier/internal/testkit/postfixtest"
)

// These tests send through a real Postfix 3.7 (postfixtest), which relays
// what it accepts to a Mailpit (mailpittest). Postfix offers PIPELINING,
// CHUNKING and 8BITMIME, so SendBatch sends a group as one pipelined
// write of MAIL, RCPT, "BDAT n LAST" with the message, and RSET, per
// message. What Postfix answers for a refused recipient (measured):
//
//	250 2.1.0 Ok                                   MAIL
//	554 5.7.1 <addr>: Recipient address rejected   RCPT (REJECT; 450 4.2.0 for a deferral)
//	554 5.5.1 Error: no valid recipients           BDAT: the transaction is over
//	250 2.0.0 Ok                                   RSET
//
// and the next MAIL of the group gets 250 again. The refused RCPT and the
// refused BDAT are two errors for smtpd_hard_error_limit, counted over the
// session (RSET does not reset the count; an accepted message does). At
// the limit, the next command, whichever it is, gets "421 4.7.0 <host>
// Error: too many errors" and Postfix closes the connection without
// reading the rest of the group: every later command of the group gets no
// reply at all.

// rcptKind is what Postfix does with a recipient.
type rcptKind int

const (
	pfAccept rcptKind = iota
	pfRefuse          // 554 at RCPT
	pfDefer           // 450 at RCPT
)

func (k rcptKind) String() string { return [...]string{"ok", "gone", "busy"}[k] }

// postfixCase is a set of messages to send through Postfix, in groups.
type postfixCase struct {
	msgs     []deliver.Message
	kinds    []rcptKind
	groups   [][]int // indexes into msgs
	pfRefuse []string
	defers   []string
}

// newPostfixCase lays out rounds copies of the group patterns, each
// recipient a distinct address of its kind.
func newPostfixCase(name string, rounds int, patterns [][]rcptKind) *postfixCase {
	c := &postfixCase{}
	for r := 0; r < rounds; r++ {
		for _, p := range patterns {
			var g []int
			for _, k := range p {
				i := len(c.msgs)
				addr := fmt.Sprintf("%s-%03d@care.example", k, i)
				m := message(int64(i+1), addr)
				m.MessageID = fmt.Sprintf("pf-%s-%d.%s@crier.example.org", name, i+1, k)
				c.msgs, c.kinds = append(c.msgs, m), append(c.kinds, k)
				switch k {
				case pfRefuse:
					c.pfRefuse = append(c.pfRefuse, addr)
				case pfDefer:
					c.defers = append(c.defers, addr)
				}
				g = append(g, i)
			}
			c.groups = append(c.groups, g)
		}
	}
	return c
}

// where describes message i's place: its group and what precedes it there.
func (c *postfixCase) where(i int) string {
	for gi, g := range c.groups {
		for p, j := range g {
			if j == i {
				before := make([]string, p)
				for q := range before {
					before[q] = c.kinds[g[q]].String()
				}
				return fmt.Sprintf("group %d position %d (after [%s])", gi, p, strings.Join(before, " "))
			}
		}
	}
	return "?"
}

// postfixRig is a Mailpit, a Postfix relaying to it, and a Sender to Postfix.
type postfixRig struct {
	mp *mailpittest.Server
	pf *postfixtest.Server
	s  *email.Sender
}

func startPostfixRig(t *testing.T, pool int, opts postfixtest.Options) *postfixRig {
	t.Helper()
	mp := mailpittest.Start(t)
	opts.RelayPort = mp.SMTPPort
	pf := postfixtest.Start(t, opts)
	settings, err := email.ParseURL(pf.SMTPURL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", pf.SMTPURL(), err)
	}
	s, err := email.New(email.Config{
		Settings:    settings,
		From:        "Example status <status@example.org>",
		HELO:        "crier.test",
		PoolSize:    pool,
		SendTimeout: 15 * time.Second,
	})
	if err != nil {
		t.Fatalf("email.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &postfixRig{mp: mp, pf: pf, s: s}
}

// waitArrivals waits until every message id of want has reached Mailpit
// and Postfix's queue is empty (so nothing more is on its way), then checks
// that each of want arrived exactly once and nothing else did.
func (r *postfixRig) waitArrivals(t *testing.T, want map[string]bool) {
	t.Helper()
	const within = 60 * time.Second
	deadline := time.Now().Add(within)
	var got map[string]int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		msgs, err := r.mp.Messages(ctx)
		cancel()
		if err != nil {
			t.Fatalf("mailpit: %v", err)
		}
		got = map[string]int{}
		for _, m := range msgs {
			got[m.MessageID]++
		}
		var missing []string
		for id := range want {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
		queued, err := r.pf.QueueLen()
		if err != nil {
			t.Fatalf("postfix queue: %v", err)
		}
		if len(missing) == 0 && queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			sort.Strings(missing)
			t.Fatalf("after %s: %d of %d accepted messages missing at Mailpit (%s), %d still in Postfix's queue",
				within, len(missing), len(want), strings.Join(missing[:min(len(missing), 10)], ", "), queued)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("%s arrived %d times, want once", id, got[id])
		}
	}
	for id, n := range got {
		if !want[id] {
			t.Errorf("%s arrived %d times, want never (refused, deferred or never accepted)", id, n)
		}
	}
}

// TestPostfixGroupedSends sends groups of four, with recipients that
// Postfix refuses (554) or defers (450) at various places in the groups,
// through SendBatch and through Send, over pools of 1 and 4 connections.
// Each message is judged by its own replies only, whatever failed before
// it in the same group: a refused recipient is a permanent 554 even right
// after another refusal or a deferral, a deferred one a transient 450, and
// every accepted message arrives once.
func TestPostfixGroupedSends(t *testing.T) {
	t.Parallel()
	patterns := [][]rcptKind{
		{pfAccept, pfRefuse, pfRefuse, pfAccept}, // a refusal right after a refusal
		{pfDefer, pfRefuse, pfAccept, pfAccept},  // a refusal right after a deferral
		{pfRefuse, pfAccept, pfDefer, pfAccept},
		{pfAccept, pfAccept, pfAccept, pfRefuse},
		{pfAccept, pfDefer, pfDefer, pfAccept},
		{pfRefuse, pfDefer, pfRefuse, pfAccept},
		{pfAccept, pfAccept, pfAccept, pfAccept},
		{pfDefer, pfAccept, pfRefuse, pfRefuse},
		{pfRefuse, pfRefuse, pfRefuse, pfRefuse},
	}
	for _, batch := range []bool{true, false} {
		for _, pool := range []int{1, 4} {
			api := "Send"
			if batch {
				api = "SendBatch"
			}
			name := fmt.Sprintf("%s/pool%d", api, pool)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				c := newPostfixCase(strings.ReplaceAll(name, "/", "-"), 3, patterns)
				// High error limits: this test is about replies, not limits.
				r := startPostfixRig(t, pool, postfixtest.Options{
					Refuse: c.pfRefuse, Defer: c.defers, SoftErrorLimit: 100, HardErrorLimit: 200,
				})
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()

				errs := make([]error, len(c.msgs))
				ids := make([]string, len(c.msgs))
				groups := make(chan []int)
				var wg sync.WaitGroup
				for range pool {
					wg.Go(func() {
						for g := range groups {
							if batch {
								ms := make([]deliver.Message, len(g))
								for k, i := range g {
									ms[k] = c.msgs[i]
								}
								for k, res := range r.s.SendBatch(ctx, ms) {
									ids[g[k]], errs[g[k]] = res.ProviderID, res.Err
								}
								continue
							}
							for _, i := range g {
								ids[i], errs[i] = r.s.Send(ctx, c.msgs[i])
							}
						}
					})
				}
				for _, g := range c.groups {
					groups <- g
				}
				close(groups)
				wg.Wait()

				want := map[string]bool{}
				for i, m := range c.msgs {
					err := errs[i]
					switch c.kinds[i] {
					case pfAccept:
						if err != nil || ids[i] != m.MessageID {
							t.Errorf("%s, %s: (%q, %v), want accepted as %s", m.To, c.where(i), ids[i], err, m.MessageID)
						}
						want[m.MessageID] = true
					case pfRefuse:
						var pe *deliver.PermanentError
						if !errors.As(err, &pe) || pe.Code != "554" {
							t.Errorf("%s, %s: %v, want a *deliver.PermanentError with code 554", m.To, c.where(i), err)
						}
					case pfDefer:
						var te *deliver.TransientError
						if !errors.As(err, &te) || te.Code != "450" || deliver.IsPermanent(err) {
							t.Errorf("%s, %s: %v, want a *deliver.TransientError with code 450", m.To, c.where(i), err)
						}
					}
				}
				r.waitArrivals(t, want)
			})
		}
	}
}

// TestPostfixErrorLimits drives Postfix into its error limits: over one
// connection, groups full of refused recipients reach
// smtpd_hard_error_limit, and Postfix answers "421 4.7.0 ... too many
// errors" in the middle of a group and hangs up. With the hard limit odd
// (5) the 421 takes the place of the BDAT reply after a refused RCPT; with
// it even (6) it answers the RSET after the refused BDAT. Failed messages are sent again a bounded number of times, as
// the delivery worker would: nothing accepted may be lost or doubled, a
// refused recipient is never a success (a permanent 554, or transient
// without a code or with 421 when the connection went before its own
// replies came), and the sender goes on over new connections.
func TestPostfixErrorLimits(t *testing.T) {
	t.Parallel()
	patterns := [][]rcptKind{
		{pfRefuse, pfRefuse, pfRefuse, pfAccept},
		{pfAccept, pfRefuse, pfRefuse, pfRefuse},
		{pfRefuse, pfDefer, pfRefuse, pfRefuse},
		{pfRefuse, pfRefuse, pfRefuse, pfRefuse},
		{pfDefer, pfRefuse, pfAccept, pfRefuse},
		{pfRefuse, pfAccept, pfRefuse, pfRefuse},
		{pfRefuse, pfRefuse, pfDefer, pfAccept},
	}
	const maxAttempts = 8
	for _, hard := range []int{5, 6} {
		t.Run(fmt.Sprintf("hard%d", hard), func(t *testing.T) {
			t.Parallel()
			c := newPostfixCase(fmt.Sprintf("limit%d", hard), 4, patterns)
			r := startPostfixRig(t, 1, postfixtest.Options{
				Refuse: c.pfRefuse, Defer: c.defers, SoftErrorLimit: 3, HardErrorLimit: hard,
			})
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()

			accepted := make([]int, len(c.msgs))
			judged := make([]bool, len(c.msgs))
			dropped := 0 // transient failures because the connection went
			pending := make([]int, len(c.msgs))
			for i := range pending {
				pending[i] = i
			}
			for attempt := 1; attempt <= maxAttempts && len(pending) > 0; attempt++ {
				var next []int
				for len(pending) > 0 {
					g := pending[:min(4, len(pending))]
					pending = pending[len(g):]
					ms := make([]deliver.Message, len(g))
					for k, i := range g {
						ms[k] = c.msgs[i]
					}
					for k, res := range r.s.SendBatch(ctx, ms) {
						i, m, err := g[k], c.msgs[g[k]], res.Err
						var te *deliver.TransientError
						connGone := errors.As(err, &te) && (te.Code == "421" || te.Code == "")
						if connGone {
							dropped++
						}
						switch c.kinds[i] {
						case pfAccept:
							switch {
							case err == nil && res.ProviderID == m.MessageID:
								accepted[i]++
								judged[i] = true
							case connGone:
								next = append(next, i)
							default:
								t.Errorf("%s, attempt %d: (%q, %v), want accepted, or transient (421 or no code) when the connection went", m.To, attempt, res.ProviderID, err)
								judged[i] = true
							}
						case pfRefuse:
							var pe *deliver.PermanentError
							switch {
							case err == nil:
								t.Errorf("%s, attempt %d: accepted as %q, want refused", m.To, attempt, res.ProviderID)
								judged[i] = true
							case errors.As(err, &pe) && pe.Code == "554":
								judged[i] = true
							case connGone:
								next = append(next, i)
							default:
								t.Errorf("%s, attempt %d: %v, want a permanent 554, or transient (421 or no code) when the connection went first", m.To, attempt, err)
								judged[i] = true
							}
						case pfDefer:
							switch {
							case err == nil:
								t.Errorf("%s, attempt %d: accepted as %q, want deferred", m.To, attempt, res.ProviderID)
								judged[i] = true
							case deliver.IsPermanent(err):
								t.Errorf("%s, attempt %d: %v, want transient", m.To, attempt, err)
								judged[i] = true
							case errors.As(err, &te) && te.Code == "450":
								judged[i] = true
							case connGone:
								next = append(next, i)
							default:
								t.Errorf("%s, attempt %d: %v, want a transient 450 (or 421 or no code)", m.To, attempt, err)
								judged[i] = true
							}
						}
					}
				}
				pending = next
			}
			for _, i := range pending {
				t.Errorf("%s (%s): still failing transiently after %d attempts", c.msgs[i].To, c.kinds[i], maxAttempts)
			}
			want := map[string]bool{}
			for i, m := range c.msgs {
				if c.kinds[i] == pfAccept {
					if accepted[i] != 1 && judged[i] {
						t.Errorf("%s reported accepted %d times", m.To, accepted[i])
					}
					want[m.MessageID] = true
				}
			}

			// The sender recovers: a group and a single message go out.
			after := newPostfixCase(fmt.Sprintf("after%d", hard), 1, [][]rcptKind{{pfAccept, pfAccept, pfAccept, pfAccept, pfAccept}})
			for k, res := range r.s.SendBatch(ctx, after.msgs[:4]) {
				if res.Err != nil {
					t.Errorf("group after the limits, message %d: %v", k, res.Err)
				}
			}
			if _, err := r.s.Send(ctx, after.msgs[4]); err != nil {
				t.Errorf("Send after the limits: %v", err)
			}
			for _, m := range after.msgs {
				want[m.MessageID] = true
			}

			log := r.pf.Log()
			limits := strings.Count(log, "too many errors after")
			connects := strings.Count(log, "]: connect from ")
			t.Logf("Postfix hit its hard limit %d times, over %d connections; %d transient failures for a dropped connection", limits, connects, dropped)
			if limits == 0 || dropped == 0 {
				t.Errorf("Postfix never reached its error limit (%d times in its log, %d dropped-connection failures): the test did not test it", limits, dropped)
			}
			// One connection is postfixtest's check that smtpd answers.
			if connects-1 <= limits {
				t.Errorf("the sender made %d connections for %d disconnections at the limit, want a new one after each", connects-1, limits)
			}
			r.waitArrivals(t, want)
		})
	}
}
