package faulttest

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
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
