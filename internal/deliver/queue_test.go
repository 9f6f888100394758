package deliver

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/crier-dev/crier/internal/store"
)

// TestJobQueueOrder: whatever order deliveries are pushed in, they come out
// highest priority first and in push order within a priority.
func TestJobQueueOrder(t *testing.T) {
	t.Parallel()
	q := newJobQueue(500)
	rng := rand.New(rand.NewPCG(1, 2))
	var id int64
	for range 10 {
		n := q.reserve(context.Background(), 50)
		batch := make([]store.Claimed, n)
		for i := range batch {
			id++
			batch[i] = store.Claimed{ID: id, Priority: rng.IntN(4)}
		}
		q.push(batch)
	}
	q.close()
	prev := store.Claimed{Priority: 4}
	count := 0
	for {
		j, ok := q.pop()
		if !ok {
			break
		}
		count++
		d := j.d
		if d.Priority > prev.Priority || (d.Priority == prev.Priority && d.ID < prev.ID) {
			t.Fatalf("delivery %d (priority %d) after %d (priority %d)", d.ID, d.Priority, prev.ID, prev.Priority)
		}
		prev = d
	}
	if count != 500 {
		t.Errorf("popped %d, want 500", count)
	}
}

// TestJobQueueRoomIsBounded: reserving waits for room, and a cancelled
// wait returns what it got.
func TestJobQueueRoomIsBounded(t *testing.T) {
	t.Parallel()
	q := newJobQueue(3)
	if n := q.reserve(context.Background(), 2); n != 2 {
		t.Fatalf("reserved %d of 2", n)
	}
	q.push([]store.Claimed{{ID: 1}, {ID: 2}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n := q.reserve(ctx, 2); n != 0 {
		t.Fatalf("reserved %d with one place left and the context cancelled, want none", n)
	}
	if _, ok := q.tryPop(); !ok {
		t.Fatal("nothing to pop")
	}
	if n := q.reserve(context.Background(), 2); n != 2 {
		t.Fatalf("reserved %d after a pop, want 2", n)
	}
}
