package faulttest

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestShortAPITokenStopsStartUp: crier serve with a short token in
// CRIER_API_TOKENS exits at once with one line naming the variable, and
// without printing the token.
func TestShortAPITokenStopsStartUp(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	cmd := exec.Command(crierBin, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "CRIER_HTTP_ADDR=127.0.0.1:0"}
	for k, v := range w.env {
		if k == "CRIER_API_TOKENS" {
			v = apiToken + ",guessable"
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || len(lines) != 1 ||
		!strings.Contains(string(out), "CRIER_API_TOKENS") || strings.Contains(string(out), "guessable") {
		t.Errorf("crier serve with a 9-character token: %v\n%s", err, out)
	}
}

// TestWrongTokensAreLimitedAcrossProcesses: wrong bearer tokens sent to two
// processes in turn share one limit: after 20, both answer 429, while the
// right token still works on both.
func TestWrongTokensAreLimitedAcrossProcesses(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	procs := []*proc{w.start("crier-a", nil), w.start("crier-b", nil)}
	var codes []int
	for i := range 24 {
		code, _ := procs[i%2].do(http.MethodGet, "/v1/components", "", nil, http.Header{"Authorization": {"Bearer wrong-" + apiToken}})
		codes = append(codes, code)
	}
	for i, c := range codes {
		if want := map[bool]int{true: 401, false: 429}[i < 20]; c != want {
			t.Fatalf("wrong token %d of 24, alternating between two processes: %d; all: %v (want 20 times 401, then 429)", i+1, c, codes)
		}
	}
	for _, p := range procs {
		if code, _ := p.do(http.MethodGet, "/v1/components", "", nil, http.Header{"Authorization": {"Bearer " + apiToken}}); code != http.StatusOK {
			t.Errorf("%s: the right token got %d", p.name, code)
		}
	}
}

// TestClientIPHeaderOnlyFromTrustedProxies: with CRIER_CLIENT_IP_HEADER set
// and a trusted proxy range that the test client is not in, a rotating
// X-Forwarded-For buys no fresh bucket: wrong sign-ins from one peer are
// limited after 10 as if the header were absent.
func TestClientIPHeaderOnlyFromTrustedProxies(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	p := w.start("crier", map[string]string{"CRIER_CLIENT_IP_HEADER": "X-Forwarded-For", "CRIER_TRUSTED_PROXIES": "10.0.0.0/8"})
	limited := 0
	for i := range 25 {
		code, _ := p.do(http.MethodPost, "/admin/login", "application/x-www-form-urlencoded",
			strings.NewReader("token=wrong-token-wrong-token-wrong-token"),
			http.Header{"X-Forwarded-For": {fmt.Sprintf("198.51.100.%d", i+1)}})
		if code == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 15 {
		t.Errorf("%d of 25 wrong sign-ins with rotating X-Forwarded-For from an untrusted peer were limited, want 15 (after the first 10)", limited)
	}
}

// TestSignOutEndsTheSessionOnEveryProcess: a session signed in on one
// process opens the dashboard on another; signing out on the second ends
// it on both, and "sign out everywhere" ends the sessions it was not
// given.
func TestSignOutEndsTheSessionOnEveryProcess(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	a, b := w.start("crier-a", nil), w.start("crier-b", nil)
	noRedirect := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	signIn := func(p *proc) string {
		t.Helper()
		resp, err := noRedirect.PostForm(p.base()+"/admin/login", url.Values{"token": {apiToken}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == "crier_admin" && c.Value != "" {
				return c.Name + "=" + c.Value
			}
		}
		t.Fatalf("sign-in on %s: %d, no session cookie", p.name, resp.StatusCode)
		return ""
	}
	dashboard := func(p *proc, cookie string) int {
		code, _ := p.do(http.MethodGet, "/admin", "", nil, http.Header{"Cookie": {cookie}})
		return code
	}
	post := func(p *proc, path, cookie string) int {
		req, _ := http.NewRequest(http.MethodPost, p.base()+path, nil)
		req.Header.Set("Cookie", cookie)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	s1 := signIn(a)
	if ca, cb := dashboard(a, s1), dashboard(b, s1); ca != 200 || cb != 200 {
		t.Fatalf("a session from crier-a: %d on crier-a, %d on crier-b; want 200 on both", ca, cb)
	}
	if code := post(b, "/admin/logout", s1); code != http.StatusSeeOther {
		t.Fatalf("sign out on crier-b: %d", code)
	}
	if ca, cb := dashboard(a, s1), dashboard(b, s1); ca != 401 || cb != 401 {
		t.Errorf("the cookie after signing out: %d on crier-a, %d on crier-b; want 401 on both", ca, cb)
	}

	s2, s3 := signIn(a), signIn(b)
	if code := post(a, "/admin/logout-everywhere", s2); code != http.StatusSeeOther {
		t.Fatalf("sign out everywhere: %d", code)
	}
	for _, p := range []*proc{a, b} {
		if c2, c3 := dashboard(p, s2), dashboard(p, s3); c2 != 401 || c3 != 401 {
			t.Errorf("%s after signing out everywhere: %d and %d for two sessions; want 401", p.name, c2, c3)
		}
	}
}
