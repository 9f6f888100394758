package subscriber_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/subscriber"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
	"github.com/crier-dev/crier/internal/token"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const publicURL = "https://status.example"

// bundle is one test's Service and what it talks to.
type bundle struct {
	st    *store.Store
	svc   *subscriber.Service
	email *recorder
	sms   *recorder
	now   *clock
}

// setup gives a test its own database with the example catalog and a
// Service sending through recorders (senders, when given, replaces them).
func setup(t *testing.T, senders map[string]deliver.Sender) *bundle {
	t.Helper()
	b := &bundle{st: pgtest.NewStore(t), email: &recorder{}, sms: &recorder{}, now: &clock{}}
	if err := example.Load(context.Background(), b.st, example.Components(), nil); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	signer, err := token.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	if senders == nil {
		senders = map[string]deliver.Sender{deliver.ChannelEmail: b.email, deliver.ChannelSMS: b.sms}
	}
	b.svc, err = subscriber.New(subscriber.Config{PublicURL: publicURL + "/", SiteName: "Care Status", Now: b.now.Now},
		subscriber.Deps{Store: b.st, Signer: signer, Links: links{}, Senders: senders})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type links struct{}

func (links) ManageURL(id int64) string { return fmt.Sprintf("%s/manage/token-%d", publicURL, id) }

// recorder is a deliver.Sender that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []deliver.Message
	err  error
}

func (r *recorder) Send(_ context.Context, m deliver.Message) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return "", r.err
	}
	r.msgs = append(r.msgs, m)
	return "provider-1", nil
}

func (r *recorder) sent() []deliver.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]deliver.Message(nil), r.msgs...)
}

// clock is a time source tests can move forward.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

func ptr[T any](v T) *T { return &v }

// input builds an Input from field=value pairs; components and channels
// are separated by commas.
func input(pairs ...string) subscriber.Input {
	var in subscriber.Input
	for i := 0; i+1 < len(pairs); i += 2 {
		v := pairs[i+1]
		list := strings.Split(v, ",")
		if v == "" {
			list = []string{}
		}
		switch pairs[i] {
		case "email":
			in.Email = ptr(v)
		case "phone":
			in.Phone = ptr(v)
		case "name":
			in.Name = ptr(v)
		case "organisation":
			in.Organisation = ptr(v)
		case "components":
			in.Components = &list
		case "channels":
			in.Channels = &list
		default:
			panic("unknown field " + pairs[i])
		}
	}
	return in
}

// expectField checks that err is a refusal whose first problem is on
// field, wraps want (when not nil) and says reason (when not "").
func expectField(t *testing.T, err error, field string, want error, reason string) {
	t.Helper()
	var fe *subscriber.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a refusal", err, err)
	}
	if fe.Field != field || (want != nil && !errors.Is(fe, want)) || (reason != "" && fe.Reason != reason) || fe.Error() != fe.Reason {
		t.Errorf("refused on %q with %q (%v), want %q with %q (%v)", fe.Field, fe.Reason, fe.Err, field, reason, want)
	}
}

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	st := pgtest.NewStore(t)
	signer, _ := token.NewSigner(make([]byte, 32))
	if _, err := subscriber.New(subscriber.Config{PublicURL: "status.example"}, subscriber.Deps{Store: st, Signer: signer, Links: links{}}); err == nil {
		t.Error("a relative PublicURL was accepted")
	}
	// Without Signer and Links a Service checks and stores; the opt-in
	// refuses to run.
	s, err := subscriber.New(subscriber.Config{PublicURL: publicURL}, subscriber.Deps{Store: st, Signer: signer})
	if err != nil {
		t.Fatalf("New without Links: %v", err)
	}
	if _, err := s.Subscribe(context.Background(), subscriber.Details{Email: "a@care.example", Components: []string{"emar"}}); err == nil {
		t.Error("Subscribe without Links went ahead")
	}
	if _, err := s.VerifyCode(context.Background(), "+447400123456", "123456"); err == nil {
		t.Error("VerifyCode without Links went ahead")
	}
	if _, err := subscriber.New(subscriber.Config{PublicURL: publicURL}, subscriber.Deps{}); err == nil {
		t.Error("missing Store was accepted")
	}
	c := subscriber.Config{}.WithDefaults()
	if c.PhoneRegion != "GB" || c.SiteName != "crier" || c.CodeTTL != 10*time.Minute || c.CodeAttempts != 5 ||
		c.ConfirmTTL != 48*time.Hour || c.SendTimeout != 20*time.Second || c.Now == nil {
		t.Errorf("defaults %+v", c)
	}
}
