package httpapi

import (
	"net/http/httptest"
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
	} {
		r := httptest.NewRequest("POST", "/subscribe", nil)
		r.RemoteAddr = tc.remote
		if tc.value != "" {
			r.Header.Set(tc.header, tc.value)
		}
		if got := clientKey(r, tc.header); got != tc.want {
			t.Errorf("clientKey(%s, %s=%q) = %q, want %q", tc.remote, tc.header, tc.value, got, tc.want)
		}
	}
}
