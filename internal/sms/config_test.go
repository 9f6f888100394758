package sms

import (
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/testkit/twiliotest"
)

func TestConfigWithDefaults(t *testing.T) {
	t.Parallel()
	c := Config{}.WithDefaults()
	if c.APIURL != DefaultAPIURL || c.Concurrency != DefaultConcurrency ||
		c.MaxIdleConnsPerHost != 64 || c.RequestTimeout != DefaultRequestTimeout || c.IdleConnTimeout != DefaultIdleConnTimeout {
		t.Errorf("defaults: %+v", c)
	}
	c = Config{Concurrency: 200}.WithDefaults()
	if c.MaxIdleConnsPerHost != 200 {
		t.Errorf("MaxIdleConnsPerHost = %d, want Concurrency (200)", c.MaxIdleConnsPerHost)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	valid := func() Config {
		return Config{AccountSID: twiliotest.ExampleAccountSID, AuthToken: twiliotest.ExampleAuthToken, From: "+447400123456"}
	}
	tests := []struct {
		name   string
		mod    func(*Config)
		errHas string // empty: valid
	}{
		{"valid", func(*Config) {}, ""},
		{"alphanumeric From", func(c *Config) { c.From = "Care Alert" }, ""},
		{"short code From", func(c *Config) { c.From = "12345" }, ""},
		{"messaging service", func(c *Config) { c.From, c.MessagingServiceSID = "", twiliotest.ExampleMessagingServiceSID }, ""},
		{"http API URL", func(c *Config) { c.APIURL = "http://127.0.0.1:4010" }, ""},
		{"no account", func(c *Config) { c.AccountSID = "" }, "AccountSID"},
		{"bad account", func(c *Config) { c.AccountSID = "ACnothex" }, "AccountSID"},
		{"API key SID", func(c *Config) { c.AccountSID = "SK" + twiliotest.ExampleAccountSID[2:] }, "AccountSID"},
		{"no token", func(c *Config) { c.AuthToken = "" }, "AuthToken"},
		{"token with symbols", func(c *Config) { c.AuthToken = "abc$def" }, "AuthToken"},
		{"no sender", func(c *Config) { c.From = "" }, "From"},
		{"both senders", func(c *Config) { c.MessagingServiceSID = twiliotest.ExampleMessagingServiceSID }, "only one"},
		{"bad From number", func(c *Config) { c.From = "+0123" }, "From"},
		{"From too long", func(c *Config) { c.From = "CareAlertsLtd" }, "From"},
		{"From with symbols", func(c *Config) { c.From = "Care-Alert" }, "From"},
		{"bad service", func(c *Config) { c.From, c.MessagingServiceSID = "", "MG123" }, "MessagingServiceSID"},
		{"API URL without scheme", func(c *Config) { c.APIURL = "api.twilio.com" }, "APIURL"},
		{"API URL ftp", func(c *Config) { c.APIURL = "ftp://api.twilio.com" }, "APIURL"},
		{"API URL with query", func(c *Config) { c.APIURL = "https://api.twilio.com/?x=1" }, "APIURL"},
		{"API URL with user", func(c *Config) { c.APIURL = "https://u:p@api.twilio.com" }, "APIURL"},
		{"negative concurrency", func(c *Config) { c.Concurrency = -1 }, "Concurrency"},
		{"negative timeout", func(c *Config) { c.RequestTimeout = -1 }, "RequestTimeout"},
	}
	for _, tt := range tests {
		c := valid()
		tt.mod(&c)
		s, err := New(c)
		if tt.errHas == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			} else {
				_ = s.Close()
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("%s: error %v, want one naming %s", tt.name, err, tt.errHas)
		}
		if err != nil && strings.Contains(err.Error(), twiliotest.ExampleAuthToken) {
			t.Errorf("%s: error %v shows the auth token", tt.name, err)
		}
	}
}
