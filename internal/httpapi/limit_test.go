package httpapi

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

func TestKeyedLimiter(t *testing.T) {
	t.Parallel()
	start := time.Date(2025, 11, 10, 13, 35, 0, 0, time.UTC)
	l := newKeyedLimiter(Limit{Every: time.Minute, Burst: 3}, 100)
	for i := range 3 {
		if !l.allow("a", start) {
			t.Fatalf("request %d refused within the burst", i+1)
		}
	}
	if l.allow("a", start) {
		t.Fatal("fourth request allowed")
	}
	if !l.allow("b", start) {
		t.Fatal("another key is limited too")
	}
	if l.allow("a", start.Add(59*time.Second)) {
		t.Fatal("refilled too early")
	}
	if !l.allow("a", start.Add(61*time.Second)) {
		t.Fatal("not refilled after a minute")
	}
}

func TestKeyedLimiterIsBounded(t *testing.T) {
	t.Parallel()
	now := time.Now()
	l := newKeyedLimiter(Limit{Every: time.Hour, Burst: 1}, 10)
	l.allow("keep", now)
	for i := range 1000 {
		l.allow(fmt.Sprint(i), now)
		if i%3 == 0 {
			l.allow("keep", now) // recently seen: never the oldest
		}
		if n := l.len(); n > 10 {
			t.Fatalf("%d keys remembered, bound is 10", n)
		}
	}
	if l.allow("keep", now) {
		t.Fatal("a key in frequent use was forgotten (its empty bucket refilled)")
	}
	// A forgotten key starts afresh.
	if !l.allow("0", now) {
		t.Fatal("the oldest key was not forgotten")
	}
}

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
