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

// clientKey is the rate-limiting key of a request's client: its IP
// address, or for IPv6 its /64 network (one subscriber line usually holds a
// whole /64). header, when set, names a header that reverse proxies append
// the client address to (X-Forwarded-For); it counts only when the peer is
// one of the trusted proxies, and then the right-most address in it that is
// not a trusted proxy is the client: what a client writes there itself is
// to the left of what the proxies appended, and is never believed.
func clientKey(r *http.Request, header string, trusted []netip.Prefix) string {
	client, ok := peerAddr(r.RemoteAddr)
	if !ok {
		return "unknown"
	}
	if header != "" && isTrusted(client, trusted) {
		entries := strings.Split(strings.Join(r.Header.Values(header), ","), ",")
		for i := len(entries) - 1; i >= 0; i-- {
			entry := strings.TrimSpace(entries[i])
			if entry == "" {
				continue
			}
			addr, err := netip.ParseAddr(entry)
			if err != nil {
				return "unknown" // a proxy wrote what it should not: keep together
			}
			client = addr.Unmap().WithZone("")
			if !isTrusted(client, trusted) {
				break
			}
		}
	}
	if client.Is6() {
		p, _ := client.Prefix(64)
		return p.String()
	}
	return client.String()
}

// peerAddr is the IP address of a connection's remote address.
func peerAddr(remote string) (netip.Addr, bool) {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		remote = host
	}
	addr, err := netip.ParseAddr(remote)
	if err != nil {
		return netip.Addr{}, false
	}
	return addr.Unmap().WithZone(""), true
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// client is clientKey of r with the API's configuration.
func (a *API) client(r *http.Request) string {
	return clientKey(r, a.cfg.ClientIPHeader, a.cfg.TrustedProxies)
}
