package serve_test

import (
	"net/http"
	"testing"

	"github.com/crier-dev/crier/internal/serve"
	"github.com/crier-dev/crier/internal/testkit/smtptest"
)

// TestHSTSWithAnHTTPSPublicURL: with an https CRIER_PUBLIC_URL every answer
// carries Strict-Transport-Security; with an http one, none does (a
// browser would otherwise refuse a local plain-http crier for a year).
func TestHSTSWithAnHTTPSPublicURL(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t)
	for _, tc := range []struct {
		publicURL, want string
	}{{"https://status.example.org", "max-age=31536000"}, {"", ""}} {
		env := map[string]string{"CRIER_SMTP_URL": srv.URL()}
		if tc.publicURL != "" {
			env["CRIER_PUBLIC_URL"] = tc.publicURL
		}
		c := start(t, env, nil, serve.Options{})
		for _, path := range []string{"/healthz", "/v1/components", "/subscribe"} {
			resp, err := http.Get(c.baseURL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Strict-Transport-Security"); got != tc.want {
				t.Errorf("public URL %q, %s: Strict-Transport-Security %q, want %q", tc.publicURL, path, got, tc.want)
			}
		}
		c.stop()
	}
}
