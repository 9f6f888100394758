package devenv

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/deliver"
)

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := NewOutbox(OutboxConfig{})
	mux := http.NewServeMux()
	o.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	_, body := get(t, srv, "/dev/outbox")
	if !strings.Contains(body, "Nothing captured yet") {
		t.Errorf("empty outbox page:\n%s", body)
	}

	emailID, err := o.Sender(deliver.ChannelEmail).Send(ctx, deliver.Message{
		DeliveryID: 41, Channel: deliver.ChannelEmail, To: "manager@oakview-care.example",
		Subject: "[Investigating] Sync <b>issues</b>", Text: "Hello,\nplain part",
		HTML:      `<html><body><p>Hello</p><script>alert(1)</script></body></html>`,
		MessageID: "crier.41.abc@crier.invalid", UnsubscribeURL: "http://127.0.0.1:8080/unsubscribe/x",
	})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("Sync Pod A is degraded. ", 8) // 192 GSM-7 characters: 2 segments
	smsID, err := o.Sender(deliver.ChannelSMS).Send(ctx, deliver.Message{DeliveryID: 42, Channel: deliver.ChannelSMS, To: "+447400123456", Text: long})
	if err != nil {
		t.Fatal(err)
	}
	if emailID == smsID || !strings.HasPrefix(emailID, "dev-") {
		t.Errorf("provider ids %q and %q: want distinct dev- ids", emailID, smsID)
	}
	// Ids differ between outboxes (runs) so a restart on the same database
	// cannot collide with the unique provider id index.
	other, _ := NewOutbox(OutboxConfig{}).Sender(deliver.ChannelEmail).Send(ctx, deliver.Message{To: "x@example.org"})
	if other == emailID {
		t.Errorf("two outboxes gave the same provider id %q", other)
	}

	resp, body := get(t, srv, "/dev/outbox")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("list: %s, CSP %q", resp.Status, resp.Header.Get("Content-Security-Policy"))
	}
	for _, want := range []string{"manager@oakview-care.example", "&#43;447400123456", "[Investigating] Sync &lt;b&gt;issues&lt;/b&gt;", "2 (GSM-7)", `href="/dev/outbox/1"`, `href="/dev/outbox/2"`} {
		if !strings.Contains(body, want) {
			t.Errorf("list lacks %q:\n%s", want, body)
		}
	}
	if strings.Index(body, `href="/dev/outbox/2"`) > strings.Index(body, `href="/dev/outbox/1"`) {
		t.Error("list is not newest first")
	}

	var list struct {
		Count int
		Items []Item
	}
	_, body = get(t, srv, "/dev/outbox.json")
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if list.Count != 2 || list.Items[0].Channel != "sms" || list.Items[0].Segments != 2 || list.Items[0].Encoding != "GSM-7" ||
		list.Items[1].DeliveryID != 41 || list.Items[1].ProviderID != emailID {
		t.Errorf("json: %+v", list)
	}

	// The email page frames the HTML in a sandbox; the HTML itself is served
	// with a CSP sandbox so its script cannot run even when opened alone.
	_, body = get(t, srv, "/dev/outbox/1")
	for _, want := range []string{`<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" src="/dev/outbox/1/html"`, "plain part", "&lt;crier.41.abc@crier.invalid&gt;", "/unsubscribe/x"} {
		if !strings.Contains(body, want) {
			t.Errorf("email page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("email page contains the email's script")
	}
	resp, body = get(t, srv, "/dev/outbox/1/html")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox") || strings.Contains(csp, "allow-scripts") || !strings.Contains(body, "<p>Hello</p>") {
		t.Errorf("email HTML: CSP %q, body %q", csp, body)
	}

	_, body = get(t, srv, "/dev/outbox/2")
	for _, want := range []string{"192 characters, GSM-7, <strong>2 segments</strong>", "Sync Pod A is degraded."} {
		if !strings.Contains(body, want) {
			t.Errorf("text page lacks %q:\n%s", want, body)
		}
	}
	for _, p := range []string{"/dev/outbox/99", "/dev/outbox/x", "/dev/outbox/2/html"} {
		if resp, _ := get(t, srv, p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
	}

	resp, err = srv.Client().Post(srv.URL+"/dev/outbox/clear", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(o.Items()) != 0 {
		t.Error("clear left messages")
	}
}

func TestOutboxLimit(t *testing.T) {
	t.Parallel()
	o := NewOutbox(OutboxConfig{Limit: 3})
	s := o.Sender(deliver.ChannelSMS)
	for range 5 {
		if _, err := s.Send(context.Background(), deliver.Message{To: "+447400123456", Text: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	items := o.Items()
	if len(items) != 3 || items[0].ID != 5 || items[2].ID != 3 {
		t.Errorf("got %+v, want the newest three", items)
	}
	if _, ok := o.Get(1); ok {
		t.Error("the oldest message is still there")
	}
}

func TestOutboxCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := NewOutbox(OutboxConfig{}).Sender(deliver.ChannelEmail).Send(ctx, deliver.Message{})
	var te *deliver.TransientError
	if !errors.As(err, &te) {
		t.Errorf("err = %v, want a TransientError", err)
	}
}
