package publicurl_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/publicurl"
)

// Every link built here reaches the route registered with its pattern,
// with the path values the handler reads.
func TestLinksReachTheirRoutes(t *testing.T) {
	mux := http.NewServeMux()
	var got string
	for _, p := range []string{publicurl.ManagePattern, publicurl.UnsubscribePattern, publicurl.ConfirmPattern} {
		mux.HandleFunc("GET "+p, func(_ http.ResponseWriter, r *http.Request) {
			got = p + " " + r.PathValue("id") + " " + r.PathValue("token")
		})
	}
	mux.HandleFunc("POST "+publicurl.TwilioStatusPath, func(http.ResponseWriter, *http.Request) { got = "status" })
	b := publicurl.New("https://status.example.org/crier/")
	for link, want := range map[string]string{
		b.Manage([]byte("tok-1")):                 publicurl.ManagePattern + "  tok-1",
		b.Unsubscribe([]byte("tok_2")):            publicurl.UnsubscribePattern + "  tok_2",
		b.Confirm(42, "tok 3"):                    publicurl.ConfirmPattern + " 42 tok 3",
		"https://x" + publicurl.ManagePath("a/b"): publicurl.ManagePattern + "  a/b",
	} {
		u, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		got = ""
		path := u.EscapedPath()
		path = strings.TrimPrefix(path, "/crier")
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
		if got != want {
			t.Errorf("%s reached %q, want %q", link, got, want)
		}
	}
	if s := b.TwilioStatus(); s != "https://status.example.org/crier/webhooks/twilio/status" {
		t.Errorf("TwilioStatus = %s", s)
	}
}
