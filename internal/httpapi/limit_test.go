package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		remote, header, value, want string
	}{
		{"192.0.2.7:5000", "", "", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "", "", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "", "", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.9]:80", "", "", "192.0.2.9"},
		{"10.0.0.1:80", "X-Forwarded-For", "203.0.113.5, 198.51.100.1", "198.51.100.1"},
		{"10.0.0.1:80", "X-Forwarded-For", "", "10.0.0.1"},
		{"10.0.0.1:80", "X-Forwarded-For", "garbage", "unknown"},
		// What the client wrote itself is left of what the proxies added.
		{"10.0.0.1:80", "X-Forwarded-For", "6.6.6.6, 198.51.100.1, 10.0.0.2", "198.51.100.1"},
		// A peer that is not a trusted proxy is the client, whatever it says.
		{"192.0.2.7:5000", "X-Forwarded-For", "198.51.100.1", "192.0.2.7"},
		{"192.0.2.7:5000", "X-Forwarded-For", "10.0.0.9", "192.0.2.7"},
	} {
		r := httptest.NewRequest("POST", "/subscribe", nil)
		r.RemoteAddr = tc.remote
		if tc.value != "" {
			r.Header.Set(tc.header, tc.value)
		}
		if got := clientKey(r, tc.header, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); got != tc.want {
			t.Errorf("clientKey(%s, %s=%q) = %q, want %q", tc.remote, tc.header, tc.value, got, tc.want)
		}
	}
}
