package httpapi

import (
	"container/list"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyedLimiter is a set of token buckets, one per key (a client address, a
// phone number), in this process's memory. It remembers at most max keys
// and forgets the least recently seen first: a forgotten key starts again
// with a full bucket, so the bound trades memory for strictness under a
// flood of distinct keys.
type keyedLimiter struct {
	limit rate.Limit
	burst int
	max   int

	mu    sync.Mutex
	order *list.List // of *bucket, most recently seen at the front
	byKey map[string]*list.Element
}

type bucket struct {
	key string
	lim *rate.Limiter
}

func newKeyedLimiter(l Limit, max int) *keyedLimiter {
	return &keyedLimiter{
		limit: rate.Every(l.Every),
		burst: l.Burst,
		max:   max,
		order: list.New(),
		byKey: map[string]*list.Element{},
	}
}

// allow takes a token from key's bucket at now and reports whether there
// was one.
func (k *keyedLimiter) allow(key string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	el, ok := k.byKey[key]
	if ok {
		k.order.MoveToFront(el)
	} else {
		for k.order.Len() >= k.max {
			oldest := k.order.Back()
			k.order.Remove(oldest)
			delete(k.byKey, oldest.Value.(*bucket).key)
		}
		el = k.order.PushFront(&bucket{key: key, lim: rate.NewLimiter(k.limit, k.burst)})
		k.byKey[key] = el
	}
	return el.Value.(*bucket).lim.AllowN(now, 1)
}

// len returns the number of keys remembered.
func (k *keyedLimiter) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.order.Len()
}

// clientKey is the rate-limiting key of a request's client: its IP address,
// or for IPv6 its /64 network (one subscriber line usually holds a whole
// /64). header, when set, names a header from a trusted proxy whose last
// entry is the client address.
func clientKey(r *http.Request, header string) string {
	raw := ""
	if header != "" {
		if v := r.Header.Values(header); len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			raw = strings.TrimSpace(last)
		}
	}
	if raw == "" {
		raw = r.RemoteAddr
		if host, _, err := net.SplitHostPort(raw); err == nil {
			raw = host
		}
	}
	addr, err := netip.ParseAddr(raw)
	if err != nil {
		return "unknown"
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}
