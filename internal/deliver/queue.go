package deliver

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/crier-dev/crier/internal/store"
)

// jobQueue holds what a worker has claimed and not yet handed to a sender,
// highest priority first and in claim order within a priority, so that a
// critical delivery claimed after hundreds of routine ones is the next to
// go, not the last. Its room is bounded: a claimer reserves room for a
// whole claim before making it, so nothing claimed waits in the claimer's
// hands, and the next claim, which will take whatever critical delivery
// is due, is made as soon as one claim's worth has gone out.
type jobQueue struct {
	// room holds one unit per place reserved or held: a claimer waits for
	// a whole claim's room at once, woken once, not once per place.
	room  *semaphore.Weighted
	ready chan struct{} // one per job in the heap
	mu    sync.Mutex
	jobs  jobHeap
	seq   uint64
}

func newJobQueue(size int) *jobQueue {
	return &jobQueue{room: semaphore.NewWeighted(int64(size)), ready: make(chan struct{}, size)}
}

// reserve waits for room for n jobs and reserves it. It returns n, or 0
// when ctx ended first.
func (q *jobQueue) reserve(ctx context.Context, n int) int {
	if err := q.room.Acquire(ctx, int64(n)); err != nil {
		return 0
	}
	return n
}

// unreserve gives back n reserved places that no job took.
func (q *jobQueue) unreserve(n int) {
	if n > 0 {
		q.room.Release(int64(n))
	}
}

// push adds claimed deliveries into places reserved for them.
func (q *jobQueue) push(ds []store.Claimed) {
	now := time.Now()
	q.mu.Lock()
	for _, d := range ds {
		q.seq++
		q.jobs.push(queued{job: job{d: d, start: now}, seq: q.seq})
	}
	q.mu.Unlock()
	for range ds {
		q.ready <- struct{}{}
	}
}

// pop waits for the first job. It returns false once the queue is closed
// and empty.
func (q *jobQueue) pop() (job, bool) {
	if _, ok := <-q.ready; !ok {
		return job{}, false
	}
	return q.take(), true
}

// tryPop returns the first job if one is waiting.
func (q *jobQueue) tryPop() (job, bool) {
	select {
	case _, ok := <-q.ready:
		if !ok {
			return job{}, false
		}
		return q.take(), true
	default:
		return job{}, false
	}
}

func (q *jobQueue) take() job {
	q.mu.Lock()
	j := q.jobs.pop().job
	q.mu.Unlock()
	q.room.Release(1)
	return j
}

// close ends the queue once no more jobs will be pushed: pop drains what
// is left, then reports the end.
func (q *jobQueue) close() { close(q.ready) }

type queued struct {
	job
	seq uint64
}

// jobHeap is a binary heap of jobs, highest priority first, then by
// arrival. It is written out rather than through container/heap, whose
// interface would box every job into an allocation of its own.
type jobHeap []queued

func (h jobHeap) before(i, j int) bool {
	if h[i].d.Priority != h[j].d.Priority {
		return h[i].d.Priority > h[j].d.Priority
	}
	return h[i].seq < h[j].seq
}

func (h *jobHeap) push(q queued) {
	*h = append(*h, q)
	a := *h
	for i := len(a) - 1; i > 0; {
		parent := (i - 1) / 2
		if !a.before(i, parent) {
			break
		}
		a[i], a[parent] = a[parent], a[i]
		i = parent
	}
}

func (h *jobHeap) pop() queued {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a[last] = queued{} // let the delivery be collected
	a = a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(a) && a.before(l, m) {
			m = l
		}
		if r < len(a) && a.before(r, m) {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}
