package httpapi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/token"
)

// limiter is one abuse limit of the pages (a Limit per client address,
// per phone number, ...), kept in token buckets in PostgreSQL that every
// crier process of the deployment shares (store.TakeToken), so that
// running more processes does not multiply it. Keys are stored as keyed
// pseudonyms (token.Signer.Pseudonym): rate_buckets holds neither
// addresses nor numbers, and forgets a key once its bucket is full again.
type limiter struct {
	name   string
	every  float64 // tokens per second
	burst  float64
	store  *store.Store
	signer *token.Signer
}

func newLimiter(name string, l Limit, st *store.Store, signer *token.Signer) *limiter {
	return &limiter{name: name, every: 1 / l.Every.Seconds(), burst: float64(l.Burst), store: st, signer: signer}
}

// allow takes a token from key's bucket at now and reports whether there
// was one.
func (l *limiter) allow(ctx context.Context, key string, now time.Time) (bool, error) {
	pace := store.Pace{Bucket: "limit:" + l.name + ":" + l.signer.Pseudonym("limit:"+l.name, key), PerSecond: l.every, Burst: l.burst}
	ok, err := l.store.TakeToken(ctx, pace, now)
	if err != nil {
		return false, fmt.Errorf("rate limit %s: %w", l.name, err)
	}
	return ok, nil
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
