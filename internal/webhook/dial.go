package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrForbiddenAddress is returned when a destination resolves to an
// address crier must not call: loopback, private, link-local (cloud
// metadata at 169.254.169.254 among them), unspecified, multicast or
// otherwise not globally routable, unless the allow list names it.
var ErrForbiddenAddress = errors.New("destination address is not allowed")

// Allow is the exceptions to the address rules (CRIER_WEBHOOK_ALLOW_PRIVATE):
// networks, and single host:port pairs.
type Allow struct {
	Prefixes []netip.Prefix
	HostPort []netip.AddrPort
}

// ParseAllow reads a comma-separated list of CIDRs, addresses and
// address:port pairs ("10.20.0.0/16,192.0.2.7,127.0.0.1:8443").
func ParseAllow(s string) (Allow, error) {
	var a Allow
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
		case strings.Contains(f, "/"):
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return Allow{}, fmt.Errorf("%q is not a CIDR: %w", f, err)
			}
			a.Prefixes = append(a.Prefixes, p.Masked())
		default:
			if ap, err := netip.ParseAddrPort(f); err == nil {
				a.HostPort = append(a.HostPort, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
				continue
			}
			addr, err := netip.ParseAddr(f)
			if err != nil {
				return Allow{}, fmt.Errorf("%q is not an address, address:port or CIDR", f)
			}
			a.Prefixes = append(a.Prefixes, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
		}
	}
	return a, nil
}

// Permits reports whether a connection to ap may be made.
func (a Allow) Permits(ap netip.AddrPort) bool {
	addr := ap.Addr().Unmap()
	for _, hp := range a.HostPort {
		if hp.Addr() == addr && hp.Port() == ap.Port() {
			return true
		}
	}
	for _, p := range a.Prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return public(addr)
}

// public reports whether addr is a globally routable unicast address.
func public(addr netip.Addr) bool {
	if !addr.IsValid() || addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() ||
		addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() {
		return false
	}
	for _, p := range reserved {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

// reserved are ranges that the netip predicates leave out and that are
// not the internet: shared address space (carrier NAT), the IETF protocol
// assignments, benchmarking, documentation, "this network", the reserved
// 240/4, NAT64 and the IPv6 discard and documentation prefixes.
var reserved = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
		"64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:db8::/32", "2001::/23",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// dialer returns a net.Dialer that checks every address it connects to,
// after DNS resolution and for each address tried: a name that resolved
// to a public address when the destination was saved and resolves to a
// private one now (DNS rebinding) is refused at the socket.
func (a Allow) dialer(r *net.Resolver) *net.Dialer {
	return &net.Dialer{
		Resolver: r,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
			}
			if !a.Permits(ap) {
				return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
			}
			return nil
		},
	}
}

// CheckHost resolves host and reports ErrForbiddenAddress when any of its
// addresses (with port) is not permitted: the check made when a
// destination is saved, so that a subscriber learns at once. The dialer
// checks again at every send.
func (a Allow) CheckHost(ctx context.Context, r *net.Resolver, host string, port uint16) error {
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, addr := range addrs {
		if !a.Permits(netip.AddrPortFrom(addr, port)) {
			return fmt.Errorf("%w: %s resolves to %s", ErrForbiddenAddress, host, addr.Unmap())
		}
	}
	return nil
}
