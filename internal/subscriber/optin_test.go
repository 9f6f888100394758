package subscriber_test

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/subscriber"
)

var (
	confirmLinkRe = regexp.MustCompile(`https://status\.example/confirm/(\d+)/([A-Za-z0-9_-]+)`)
	codeRe        = regexp.MustCompile(`\b(\d{6})\b`)
)

// request checks a subscribe request as the subscribe page does.
func (b *bundle) request(t *testing.T, in subscriber.Input) subscriber.Details {
	t.Helper()
	d, err := b.svc.CheckRequest(context.Background(), subscriber.NewSnapshot(example.Components()), in)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// confirmLink returns the id and token of the last confirmation link sent.
func (b *bundle) confirmLink(t *testing.T) (id, tok string) {
	t.Helper()
	msgs := b.email.sent()
	if len(msgs) == 0 {
		t.Fatal("no email sent")
	}
	m := confirmLinkRe.FindStringSubmatch(msgs[len(msgs)-1].Text)
	if m == nil {
		t.Fatalf("no confirmation link in %q", msgs[len(msgs)-1].Text)
	}
	return m[1], m[2]
}

func TestSubscribeByEmail(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	d := b.request(t, input("email", "Jo@Hillcrest.example", "name", "Jo", "components", "emar,capa"))
	res, err := b.svc.Subscribe(ctx, d)
	if err != nil || res.Email != nil || res.SMS != nil {
		t.Fatalf("Subscribe = %+v, %v", res, err)
	}
	msgs := b.email.sent()
	if len(msgs) != 1 || msgs[0].To != "Jo@Hillcrest.example" || msgs[0].Channel != deliver.ChannelEmail ||
		msgs[0].Subject != "Confirm your Care Status incident notifications" || !strings.Contains(msgs[0].Text, "within 48 hours") {
		t.Fatalf("sent %+v", msgs)
	}
	id, tok := b.confirmLink(t)
	sub, err := b.svc.CheckConfirm(ctx, id, tok)
	if err != nil || sub.Email != "Jo@Hillcrest.example" || sub.EmailConfirmedAt != nil {
		t.Fatalf("CheckConfirm = %+v, %v", sub, err)
	}
	if sub, err = b.svc.Confirm(ctx, id, tok); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.st.GetSubscriber(ctx, sub.ID); got.EmailConfirmedAt == nil || strings.Join(got.Components, ",") != "capa,emar" {
		t.Errorf("after Confirm %+v", got)
	}

	// Subscribing again tells the address it is subscribed, with its manage
	// link, and changes nothing.
	if _, err := b.svc.Subscribe(ctx, b.request(t, input("email", "jo@hillcrest.example", "components", "atlas-sync"))); err != nil {
		t.Fatal(err)
	}
	msgs = b.email.sent()
	last := msgs[len(msgs)-1]
	if len(msgs) != 2 || last.Subject != "You already get Care Status incident notifications" || !strings.Contains(last.Text, links{}.ManageURL(sub.ID)) ||
		confirmLinkRe.MatchString(last.Text) {
		t.Errorf("second message %+v", last)
	}
	if got, _ := b.st.GetSubscriber(ctx, sub.ID); strings.Join(got.Components, ",") != "capa,emar" {
		t.Errorf("a second request changed the components: %v", got.Components)
	}
}

func TestConfirmLinkRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	if _, err := b.svc.Subscribe(ctx, b.request(t, input("email", "jo@hillcrest.example", "components", "emar"))); err != nil {
		t.Fatal(err)
	}
	id, tok := b.confirmLink(t)
	other, err := b.st.CreateSubscriber(ctx, store.NewSubscriber{Email: "sam@hillcrest.example", Components: []string{"emar"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, link := range map[string][2]string{
		"wrong id":        {"999999", tok},
		"another's id":    {strconv.FormatInt(other, 10), tok},
		"not a number":    {"x" + id, tok},
		"negative":        {"-" + id, tok},
		"forged":          {id, tok[:len(tok)-2] + "AA"},
		"empty token":     {id, ""},
		"escaped garbage": {id, url.PathEscape("../..")},
	} {
		if _, err := b.svc.CheckConfirm(ctx, link[0], link[1]); !errors.Is(err, subscriber.ErrLinkInvalid) {
			t.Errorf("%s: CheckConfirm = %v", name, err)
		}
		if _, err := b.svc.Confirm(ctx, link[0], link[1]); !errors.Is(err, subscriber.ErrLinkInvalid) {
			t.Errorf("%s: Confirm = %v", name, err)
		}
	}
	// The link is bound to the address: after a change it no longer works.
	sub, err := b.svc.CheckConfirm(ctx, id, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Update(ctx, sub.ID, input("email", "jo.bloggs@hillcrest.example")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Confirm(ctx, id, tok); !errors.Is(err, subscriber.ErrLinkInvalid) {
		t.Errorf("link for the old address: %v", err)
	}
	// And it expires.
	if _, err := b.svc.Subscribe(ctx, b.request(t, input("email", "pat@hillcrest.example", "components", "emar"))); err != nil {
		t.Fatal(err)
	}
	id, tok = b.confirmLink(t)
	b.now.advance(49 * time.Hour)
	if _, err := b.svc.Confirm(ctx, id, tok); !errors.Is(err, subscriber.ErrLinkInvalid) {
		t.Errorf("expired link: %v", err)
	}
}

func TestSubscribeBySMS(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	d := b.request(t, input("phone", "07400 123456", "components", "emar"))
	if res, err := b.svc.Subscribe(ctx, d); err != nil || res.SMS != nil || res.Email != nil {
		t.Fatalf("Subscribe = %+v, %v", res, err)
	}
	msgs := b.sms.sent()
	if len(msgs) != 1 || msgs[0].To != "+447400123456" || !strings.Contains(msgs[0].Text, "Care Status: your confirmation code is") ||
		!strings.Contains(msgs[0].Text, "expires in 10 minutes") {
		t.Fatalf("sent %+v", msgs)
	}
	code := codeRe.FindStringSubmatch(msgs[0].Text)[1]
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	_, err := b.svc.VerifyCode(ctx, "+447400123456", wrong)
	if !errors.Is(err, subscriber.ErrCodeRefused) || !errors.Is(err, store.ErrCodeWrong) {
		t.Errorf("wrong code: %v", err)
	}
	if _, err := b.svc.VerifyCode(ctx, "+447400123499", code); !errors.Is(err, subscriber.ErrCodeRefused) {
		t.Errorf("code for another number: %v", err)
	}
	id, err := b.svc.VerifyCode(ctx, "+447400123456", code)
	if err != nil {
		t.Fatal(err)
	}
	if sub, _ := b.st.GetSubscriber(ctx, id); sub.Phone != "+447400123456" || sub.SMSConfirmedAt == nil {
		t.Errorf("after VerifyCode %+v", sub)
	}
	if _, err := b.svc.VerifyCode(ctx, "+447400123456", code); !errors.Is(err, subscriber.ErrCodeRefused) {
		t.Errorf("a code used twice: %v", err)
	}
}

func TestCodeExpiresAndAttemptsAreLimited(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	d := b.request(t, input("phone", "07400 123457", "components", "emar"))
	lastCode := func() string {
		msgs := b.sms.sent()
		return codeRe.FindStringSubmatch(msgs[len(msgs)-1].Text)[1]
	}
	if _, err := b.svc.Subscribe(ctx, d); err != nil {
		t.Fatal(err)
	}
	code := lastCode()
	var hash []byte
	var secs float64
	if err := b.st.Pool().QueryRow(ctx, `SELECT code_hash, extract(epoch FROM expires_at - created_at) FROM sms_codes WHERE phone = $1`, d.Phone).Scan(&hash, &secs); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(hash), code) {
		t.Error("the code is stored in plain form")
	}
	if ttl := time.Duration(secs * float64(time.Second)); ttl < 9*time.Minute || ttl > 11*time.Minute {
		t.Errorf("codes live %v, want 10m", ttl)
	}
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	for range 5 {
		if _, err := b.svc.VerifyCode(ctx, d.Phone, wrong); !errors.Is(err, subscriber.ErrCodeRefused) {
			t.Fatalf("wrong code: %v", err)
		}
	}
	if _, err := b.svc.VerifyCode(ctx, d.Phone, code); !errors.Is(err, subscriber.ErrCodeRefused) {
		t.Errorf("the right code after 5 wrong ones: %v", err)
	}

	// A new code replaces the spent one, and expires.
	if _, err := b.svc.Subscribe(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := b.st.Pool().Exec(ctx, `UPDATE sms_codes SET expires_at = now() - interval '1 second' WHERE phone = $1`, d.Phone); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.VerifyCode(ctx, d.Phone, lastCode()); !errors.Is(err, subscriber.ErrCodeRefused) {
		t.Errorf("expired code: %v", err)
	}
	if sub, err := b.st.GetSubscriber(ctx, mustID(t, b, d.Phone)); err != nil || sub.SMSConfirmedAt != nil {
		t.Errorf("confirmed by a refused code: %+v, %v", sub, err)
	}
}

// mustID returns the id of the subscriber with addr.
func mustID(t *testing.T, b *bundle, addr string) int64 {
	t.Helper()
	subs, err := b.st.ListSubscribers(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if strings.EqualFold(s.Email, addr) || s.Phone == addr {
			return s.ID
		}
	}
	t.Fatalf("no subscriber %s", addr)
	return 0
}

// TestSendFailures: sending problems are in the result, not the error, and
// the request is stored all the same.
func TestSendFailures(t *testing.T) {
	t.Parallel()
	refused := deliver.Permanent("550", errors.New("mailbox unavailable"))
	failing := &recorder{err: refused}
	b := setup(t, map[string]deliver.Sender{deliver.ChannelEmail: failing, deliver.ChannelSMS: nil})
	d, err := b.svc.Check(context.Background(), b.st, input("email", "jo@hillcrest.example", "phone", "07400 123456", "components", "emar"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.svc.Subscribe(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Email, refused) || !errors.Is(res.SMS, subscriber.ErrChannelOff) {
		t.Errorf("Subscribe = %+v", res)
	}
	if !storeHas(t, b.st, "jo@hillcrest.example") || !storeHas(t, b.st, "+447400123456") {
		t.Error("the request was not stored")
	}
}
