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
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
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
