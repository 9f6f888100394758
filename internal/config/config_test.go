package config

import (
	"strings"
	"testing"
	"time"
)

func load(vars map[string]string) (Config, error) {
	return Load(func(k string) string { return vars[k] })
}

// TestLeaseAndRetrySettings: CRIER_LEASE, CRIER_RETRY_BACKOFF and
// CRIER_RETRY_MAX_BACKOFF have their documented defaults, are read as
// durations, and a bad value or combination is one error naming the
// variable.
func TestLeaseAndRetrySettings(t *testing.T) {
	t.Parallel()
	c, err := load(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Lease != 2*time.Minute || c.RetryBackoff != 5*time.Second || c.RetryMaxBackoff != 10*time.Minute {
		t.Errorf("defaults: lease %s, backoff %s, max backoff %s", c.Lease, c.RetryBackoff, c.RetryMaxBackoff)
	}
	c, err = load(map[string]string{"CRIER_LEASE": "5s", "CRIER_RETRY_BACKOFF": "1s", "CRIER_RETRY_MAX_BACKOFF": "10s"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Lease != 5*time.Second || c.RetryBackoff != time.Second || c.RetryMaxBackoff != 10*time.Second {
		t.Errorf("set: lease %s, backoff %s, max backoff %s", c.Lease, c.RetryBackoff, c.RetryMaxBackoff)
	}
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"CRIER_LEASE": "forever"}, "CRIER_LEASE: must be a positive duration"},
		{map[string]string{"CRIER_LEASE": "-1m"}, "CRIER_LEASE: must be a positive duration"},
		{map[string]string{"CRIER_RETRY_BACKOFF": "0s"}, "CRIER_RETRY_BACKOFF: must be a positive duration"},
		{map[string]string{"CRIER_RETRY_BACKOFF": "1m", "CRIER_RETRY_MAX_BACKOFF": "30s"}, "CRIER_RETRY_MAX_BACKOFF: must not be shorter"},
	} {
		_, err := load(tc.vars)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line starting %q", tc.vars, err, tc.want)
		}
	}
}

// TestAbuseLimits: the CRIER_LIMIT_* variables default to httpapi's limits
// and are read as BURST/WINDOW; a bad one is one error naming it.
func TestAbuseLimits(t *testing.T) {
	t.Parallel()
	c, err := load(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if c.LimitSMSClient.Burst != 10 || c.LimitSMSClient.Every*10 != 4*time.Hour {
		t.Errorf("default SMS codes per client: %+v, want 10 per 4h", c.LimitSMSClient)
	}
	c, err = load(map[string]string{"CRIER_LIMIT_SMS_CLIENT": "5/1h", "CRIER_LIMIT_SIGNIN_CLIENT": "3/90s"})
	if err != nil {
		t.Fatal(err)
	}
	if c.LimitSMSClient.Burst != 5 || c.LimitSMSClient.Every != 12*time.Minute || c.LimitSignInClient.Every != 30*time.Second {
		t.Errorf("set: %+v, %+v", c.LimitSMSClient, c.LimitSignInClient)
	}
	for _, v := range []string{"10", "10/", "/4h", "0/1h", "ten/4h", "10/4", "10/100ms"} {
		_, err := load(map[string]string{"CRIER_LIMIT_CODE_CLIENT": v})
		if err == nil || !strings.HasPrefix(err.Error(), "CRIER_LIMIT_CODE_CLIENT: must be BURST/WINDOW") {
			t.Errorf("%q: error %v", v, err)
		}
	}
}

func TestAlertComponents(t *testing.T) {
	t.Parallel()
	c, err := load(map[string]string{"CRIER_ALERT_COMPONENTS": "job=emar-api:emar, service=sync-a:atlas-sync/sync-pod-a", "CRIER_ALERT_COMPONENT_LABEL": "crier_component"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Alerts.ComponentLabel != "crier_component" || c.Alerts.Components["job=emar-api"] != "emar" || c.Alerts.Components["service=sync-a"] != "atlas-sync/sync-pod-a" {
		t.Errorf("alerts mapping %+v", c.Alerts)
	}
	for _, v := range []string{"emar", "job:emar", "job=:emar", "=x:emar", "job=x:"} {
		if _, err := load(map[string]string{"CRIER_ALERT_COMPONENTS": v}); err == nil || !strings.HasPrefix(err.Error(), "CRIER_ALERT_COMPONENTS: must be label=value:component") {
			t.Errorf("%q: error %v", v, err)
		}
	}
}

// TestShortAPITokensAreRefused: a token shorter than 32 characters stops
// start-up with one line naming the variable and not the token.
func TestShortAPITokensAreRefused(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", MinAPITokenLen)
	if _, err := load(map[string]string{"CRIER_API_TOKENS": long + "," + long + "x"}); err != nil {
		t.Fatalf("32-character tokens refused: %v", err)
	}
	_, err := load(map[string]string{"CRIER_API_TOKENS": long + ",a-short-secret"})
	if err == nil || !strings.HasPrefix(err.Error(), "CRIER_API_TOKENS: token 2 of 2 is 14 characters") || strings.Contains(err.Error(), "a-short-secret") {
		t.Errorf("error %v", err)
	}
}

// TestTrustedProxies: CRIER_CLIENT_IP_HEADER needs CRIER_TRUSTED_PROXIES,
// read as CIDRs or addresses.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	if _, err := load(map[string]string{"CRIER_CLIENT_IP_HEADER": "X-Forwarded-For"}); err == nil || !strings.HasPrefix(err.Error(), "CRIER_TRUSTED_PROXIES: is required") {
		t.Errorf("header without trusted proxies: %v", err)
	}
	c, err := load(map[string]string{"CRIER_CLIENT_IP_HEADER": "X-Forwarded-For", "CRIER_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1, 2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.TrustedProxies) != 3 || c.TrustedProxies[1].String() != "192.0.2.1/32" {
		t.Errorf("trusted proxies %v", c.TrustedProxies)
	}
	if _, err := load(map[string]string{"CRIER_TRUSTED_PROXIES": "proxy.internal"}); err == nil || !strings.HasPrefix(err.Error(), "CRIER_TRUSTED_PROXIES: must be CIDRs") {
		t.Errorf("a host name: %v", err)
	}
}
