// Package sendertest is the conformance suite every channel sender passes:
// the behaviour the delivery workers rely on, checked against a real
// protocol peer (an SMTP server, a Twilio REST stand-in).
package sendertest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
)

// Harness connects the suite to one sender and its peer.
type Harness struct {
	Sender deliver.Sender
	// Message returns a valid message to the i-th recipient.
	Message func(i int) deliver.Message
	// Received counts the messages the peer accepted.
	Received func() int
	// Refuse makes the peer refuse the i-th recipient for good (an unknown
	// mailbox, an invalid number).
	Refuse func(i int)
	// Throttle makes the peer answer "try later" (SMTP 4xx, HTTP 429) to
	// the i-th recipient.
	Throttle func(i int)
	// Down makes the peer unreachable (true) or reachable again (false).
	Down func(bool)
}

// Run runs the suite; newHarness gives each subtest a fresh sender and peer.
// A sender that is also a deliver.BatchSender passes the batch part of the
// suite too (runBatch), since the delivery workers use SendBatch under load.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	runSend(t, newHarness)
	t.Run("Batch", func(t *testing.T) { runBatch(t, newHarness) })
}

// runSend checks Send, which every sender has.
func runSend(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("SendsAndReturnsProviderID", func(t *testing.T) {
		h := newHarness(t)
		id, err := h.Sender.Send(context.Background(), h.Message(0))
		if err != nil || id == "" {
			t.Fatalf("Send = %q, %v; want a provider id", id, err)
		}
		if h.Received() != 1 {
			t.Errorf("peer received %d, want 1", h.Received())
		}
	})
	t.Run("ConcurrentSendsArriveOnce", func(t *testing.T) {
		h := newHarness(t)
		const n = 60
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				if _, err := h.Sender.Send(context.Background(), h.Message(i)); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if h.Received() != n {
			t.Errorf("peer received %d, want %d", h.Received(), n)
		}
	})
	t.Run("RefusalIsPermanent", func(t *testing.T) {
		h := newHarness(t)
		h.Refuse(1)
		_, err := h.Sender.Send(context.Background(), h.Message(1))
		var perm *deliver.PermanentError
		if !errors.As(err, &perm) || perm.Code == "" {
			t.Fatalf("refused recipient: %v; want a *PermanentError with the provider's code", err)
		}
		if _, err := h.Sender.Send(context.Background(), h.Message(2)); err != nil {
			t.Errorf("another recipient after a refusal: %v", err)
		}
	})
	t.Run("ThrottlingIsTransient", func(t *testing.T) {
		h := newHarness(t)
		h.Throttle(1)
		_, err := h.Sender.Send(context.Background(), h.Message(1))
		var tr *deliver.TransientError
		if !errors.As(err, &tr) || deliver.IsPermanent(err) {
			t.Fatalf("throttled: %v; want a *TransientError", err)
		}
	})
	t.Run("UnreachablePeerIsNotPermanent", func(t *testing.T) {
		h := newHarness(t)
		h.Down(true)
		_, err := h.Sender.Send(context.Background(), h.Message(0))
		if err == nil || deliver.IsPermanent(err) {
			t.Fatalf("peer down: %v; want a retryable error", err)
		}
		h.Down(false)
		if _, err := h.Sender.Send(context.Background(), h.Message(0)); err != nil {
			t.Errorf("peer back: %v", err)
		}
	})
	t.Run("CancelledContextStopsTheSend", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		_, err := h.Sender.Send(ctx, h.Message(0))
		if err == nil || deliver.IsPermanent(err) {
			t.Errorf("cancelled: %v; want a retryable error", err)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("cancelled send took %s", time.Since(start))
		}
	})
}

// batchOf sends the messages to recipients first, first+1, … in one batch.
func batchOf(t *testing.T, h Harness, first, n int) []deliver.SendResult {
	t.Helper()
	bs, ok := h.Sender.(deliver.BatchSender)
	if !ok {
		t.Fatalf("%T is not a deliver.BatchSender", h.Sender)
	}
	ms := make([]deliver.Message, n)
	for i := range ms {
		ms[i] = h.Message(first + i)
	}
	res := bs.SendBatch(context.Background(), ms)
	if len(res) != n {
		t.Fatalf("SendBatch of %d returned %d results", n, len(res))
	}
	return res
}

// runBatch checks SendBatch: one result per message, in order, each as Send
// would have returned it, whatever the other messages of the batch met.
func runBatch(t *testing.T, newHarness func(t *testing.T) Harness) {
	if _, ok := newHarness(t).Sender.(deliver.BatchSender); !ok {
		return // the workers call Send only
	}
	t.Run("SendsEachOnceWithItsProviderID", func(t *testing.T) {
		h := newHarness(t)
		res := batchOf(t, h, 0, 4)
		seen := map[string]bool{}
		for i, r := range res {
			if r.Err != nil || r.ProviderID == "" || seen[r.ProviderID] {
				t.Errorf("message %d: %q, %v; want its own provider id", i, r.ProviderID, r.Err)
			}
			seen[r.ProviderID] = true
		}
		if h.Received() != 4 {
			t.Errorf("peer received %d, want 4", h.Received())
		}
	})
	t.Run("RefusalsFailOnlyThemselves", func(t *testing.T) {
		h := newHarness(t)
		// Two refusals side by side, then a throttled one: each message is
		// judged by what the peer said of it alone.
		h.Refuse(1)
		h.Refuse(2)
		h.Throttle(3)
		res := batchOf(t, h, 0, 5)
		for _, i := range []int{1, 2} {
			var perm *deliver.PermanentError
			if !errors.As(res[i].Err, &perm) || perm.Code == "" {
				t.Errorf("refused message %d: %v; want a *PermanentError with the provider's code", i, res[i].Err)
			}
		}
		var tr *deliver.TransientError
		if !errors.As(res[3].Err, &tr) || deliver.IsPermanent(res[3].Err) {
			t.Errorf("throttled message 3: %v; want a *TransientError", res[3].Err)
		}
		for _, i := range []int{0, 4} {
			if res[i].Err != nil || res[i].ProviderID == "" {
				t.Errorf("message %d: %q, %v; want sent", i, res[i].ProviderID, res[i].Err)
			}
		}
		if h.Received() != 2 {
			t.Errorf("peer received %d, want 2", h.Received())
		}
		// The sender is still usable.
		for i, r := range batchOf(t, h, 10, 3) {
			if r.Err != nil {
				t.Errorf("next batch, message %d: %v", i, r.Err)
			}
		}
	})
	t.Run("UnreachablePeerIsNotPermanent", func(t *testing.T) {
		h := newHarness(t)
		h.Down(true)
		for i, r := range batchOf(t, h, 0, 3) {
			if r.Err == nil || deliver.IsPermanent(r.Err) {
				t.Errorf("peer down, message %d: %v; want a retryable error", i, r.Err)
			}
		}
		h.Down(false)
		for i, r := range batchOf(t, h, 0, 3) {
			if r.Err != nil {
				t.Errorf("peer back, message %d: %v", i, r.Err)
			}
		}
	})
}
