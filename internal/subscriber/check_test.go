package subscriber_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/subscriber"
)

// TestCheck is the table of rules every entry point shares; the reasons
// are what the JSON API answers.
func TestCheck(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	many := strings.TrimSuffix(strings.Repeat("emar,", event.MaxComponents+1), ",")
	for _, tc := range []struct {
		name   string
		in     subscriber.Input
		field  string
		want   error
		reason string
	}{
		{"bad email", input("email", "manager at oakview", "components", "emar"), "email", subscriber.ErrBadEmail, "email is not an email address (want name@example.org)"},
		{"display name", input("email", "Alex <alex@example.org>", "components", "emar"), "email", subscriber.ErrBadEmail, ""},
		{"drama number", input("phone", "07700 900123", "components", "emar"), "phone", phone.ErrInvalid, ""},
		{"landline", input("phone", "020 7946 0018", "components", "emar"), "phone", phone.ErrNotMobile,
			"phone: not a mobile phone number: it is a fixed-line number; text messages need a mobile number"},
		{"letters", input("phone", "call me", "components", "emar"), "phone", phone.ErrInvalid, ""},
		{"no address", input("name", "Nobody", "components", "emar"), "email", subscriber.ErrNoAddress, "give an email address, a phone number or both"},
		{"blank addresses", input("email", "  ", "phone", " ", "components", "emar"), "email", subscriber.ErrNoAddress, ""},
		{"long name", input("email", "x@example.org", "name", strings.Repeat("é", 201), "components", "emar"), "name", subscriber.ErrTooLong,
			"name is 201 characters, more than the limit of 200"},
		{"two-line organisation", input("email", "x@example.org", "organisation", "Oakview\nCare", "components", "emar"), "organisation", subscriber.ErrControlChar,
			"organisation must not contain control or formatting characters"},
		{"NUL in name", input("email", "x@example.org", "name", "a\x00b", "components", "emar"), "name", subscriber.ErrControlChar, ""},
		{"right-to-left override in name", input("email", "x@example.org", "name", "Ann \u202Eeivko", "components", "emar"), "name", subscriber.ErrControlChar, ""},
		{"line separator in organisation", input("email", "x@example.org", "organisation", "Oakview\u2028Care", "components", "emar"), "organisation", subscriber.ErrControlChar, ""},
		{"no components", input("email", "x@example.org"), "components", subscriber.ErrNoComponents, "components is required: name at least one component key"},
		{"empty components", input("email", "x@example.org", "components", ""), "components", subscriber.ErrNoComponents, ""},
		{"too many components", input("email", "x@example.org", "components", many), "components", subscriber.ErrTooManyComponents,
			fmt.Sprintf("components names more than %d keys", event.MaxComponents)},
		{"bad key", input("email", "x@example.org", "components", "emar,Lunch Menu"), "components", subscriber.ErrBadComponentKey, `"Lunch Menu" is not a component key`},
		{"unknown component", input("email", "x@example.org", "components", "emar,lunch"), "components", subscriber.ErrUnknownComponent, `unknown component "lunch"`},
		{"unknown channel", input("email", "x@example.org", "components", "emar", "channels", "fax"), "channels", subscriber.ErrUnknownChannel, `unknown channel "fax" (email, sms, webhook, teams, slack)`},
		{"sms without phone", input("email", "x@example.org", "components", "emar", "channels", "sms"), "channels", subscriber.ErrChannelNeedsAddress, "channel sms needs a phone number"},
		{"email without address", input("phone", "07400 123456", "components", "emar", "channels", "email"), "channels", subscriber.ErrChannelNeedsAddress, "channel email needs an email address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.svc.Check(ctx, b.st, tc.in)
			expectField(t, err, tc.field, tc.want, tc.reason)
			var invalid *subscriber.InvalidError
			if !errors.As(err, &invalid) {
				t.Errorf("%T is not an *InvalidError", err)
			}
		})
	}
}

func TestCheckNormalises(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	d, err := b.svc.Check(context.Background(), b.st, input("email", "  manager@oakview-care.example ", "phone", "07400 123456",
		"name", " Alex Morgan ", "organisation", "\tOakview Care Home", "components", "emar,atlas-sync,emar"))
	if err != nil {
		t.Fatal(err)
	}
	want := subscriber.Details{
		Email: "manager@oakview-care.example", Phone: "+447400123456", Name: "Alex Morgan", Organisation: "Oakview Care Home", Role: "primary",
		Components: []string{"emar", "atlas-sync"}, Channels: []string{deliver.ChannelEmail, deliver.ChannelSMS},
	}
	if fmt.Sprint(d) != fmt.Sprint(want) {
		t.Errorf("checked %+v, want %+v", d, want)
	}
	if !d.Uses(deliver.ChannelSMS) {
		t.Error("the SMS channel is not used by default")
	}
	d, err = b.svc.Check(context.Background(), b.st, input("phone", "+44 7400 123456", "email", "", "components", "capa", "channels", "sms"))
	if err != nil || d.Email != "" || d.Uses(deliver.ChannelEmail) || !d.Uses(deliver.ChannelSMS) {
		t.Errorf("phone only: %+v, %v", d, err)
	}
}

// TestCheckFindsEveryProblem: a form shows every field at fault at once,
// the JSON API the first in field order.
func TestCheckFindsEveryProblem(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	_, err := b.svc.Check(context.Background(), b.st, input("email", "jo at example", "phone", "020 7946 0018",
		"name", "a\nb", "organisation", strings.Repeat("x", 201), "components", "lunch", "channels", "fax"))
	var invalid *subscriber.InvalidError
	if !errors.As(err, &invalid) {
		t.Fatalf("error %v", err)
	}
	var fields []string
	for _, fe := range invalid.Fields {
		fields = append(fields, fe.Field)
	}
	if got := strings.Join(fields, ","); got != "email,phone,name,organisation,components,channels" {
		t.Errorf("fields %s", got)
	}
	expectField(t, err, "email", subscriber.ErrBadEmail, "")
	if !errors.Is(err, phone.ErrNotMobile) || !errors.Is(err, subscriber.ErrUnknownComponent) {
		t.Errorf("%v does not wrap every problem", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "email is not an email address") || !strings.Contains(msg, `unknown component "lunch"`) {
		t.Errorf("Error() = %q", msg)
	}
}

// failingCatalog cannot be read.
type failingCatalog struct{}

var errCatalogDown = errors.New("catalog down")

func (failingCatalog) KnownComponents(context.Context, []string) (map[string]bool, error) {
	return nil, errCatalogDown
}

func TestCheckCatalogTrouble(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	if _, err := b.svc.Check(ctx, failingCatalog{}, input("email", "x@example.org", "components", "emar")); !errors.Is(err, errCatalogDown) {
		t.Errorf("catalog error %v", err)
	}
	// Input refused already is refused, whatever the catalog.
	_, err := b.svc.Check(ctx, failingCatalog{}, input("email", "not an address", "components", "emar"))
	expectField(t, err, "email", subscriber.ErrBadEmail, "")
	if errors.Is(err, errCatalogDown) {
		t.Errorf("refusal %v wraps the catalog's error", err)
	}
	// No lookup for components that are refused before it.
	_, err = b.svc.Check(ctx, failingCatalog{}, input("email", "x@example.org", "components", ""))
	expectField(t, err, "components", subscriber.ErrNoComponents, "")
}

func TestSnapshot(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	snap := subscriber.NewSnapshot(example.Components())
	got, err := snap.KnownComponents(context.Background(), []string{"emar", "lunch", "atlas-sync/sync-pod-a"})
	if err != nil || len(got) != 2 || !got["emar"] || !got["atlas-sync/sync-pod-a"] {
		t.Errorf("snapshot knows %v, %v", got, err)
	}
	in := input("email", "x@example.org", "components", "capa,lunch")
	_, fromSnap := b.svc.Check(context.Background(), snap, in)
	_, fromStore := b.svc.Check(context.Background(), b.st, in)
	if fromSnap == nil || fromStore == nil || fromSnap.Error() != fromStore.Error() {
		t.Errorf("snapshot says %v, the store %v", fromSnap, fromStore)
	}
}

func TestCheckComponents(t *testing.T) {
	t.Parallel()
	snap := subscriber.NewSnapshot(example.Components())
	got, err := subscriber.CheckComponents(context.Background(), snap, []string{"capa", "emar", "capa"})
	if err != nil || strings.Join(got, ",") != "capa,emar" {
		t.Errorf("CheckComponents = %v, %v", got, err)
	}
	_, err = subscriber.CheckComponents(context.Background(), snap, nil)
	expectField(t, err, "components", subscriber.ErrNoComponents, "")
	_, err = subscriber.CheckComponents(context.Background(), snap, []string{"emar", "../../etc/passwd"})
	expectField(t, err, "components", subscriber.ErrBadComponentKey, "")
	_, err = subscriber.CheckComponents(context.Background(), snap, []string{"atlas-sync/sync-pod-z"})
	expectField(t, err, "components", subscriber.ErrUnknownComponent, "")
}

// TestCheckRequest: the subscribe page takes no address on a channel
// without a sender, and says so before anything else about the field.
func TestCheckRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]deliver.Sender{deliver.ChannelEmail: &recorder{}})
	ctx := context.Background()
	snap := subscriber.NewSnapshot(example.Components())
	if !b.svc.Offers(deliver.ChannelEmail) || b.svc.Offers(deliver.ChannelSMS) {
		t.Fatal("Offers does not follow the senders")
	}
	_, err := b.svc.CheckRequest(ctx, snap, input("phone", "020 7946 0018", "components", "emar"))
	expectField(t, err, "phone", subscriber.ErrChannelOff, "")
	var invalid *subscriber.InvalidError
	if errors.As(err, &invalid); len(invalid.Fields) != 1 {
		t.Errorf("problems %v, want only the channel", err)
	}
	_, err = b.svc.CheckRequest(ctx, snap, input("email", "jo at example", "phone", "07400 123456", "components", "emar"))
	expectField(t, err, "phone", subscriber.ErrChannelOff, "text messages are not available")
	if !errors.Is(err, subscriber.ErrBadEmail) {
		t.Errorf("%v does not name the email address", err)
	}
	d, err := b.svc.CheckRequest(ctx, snap, input("email", "jo@example.org", "phone", "", "components", "emar"))
	if err != nil || d.Email != "jo@example.org" {
		t.Errorf("CheckRequest = %+v, %v", d, err)
	}
}

// storeHas reports whether the store holds a subscriber with addr.
func storeHas(t *testing.T, st *store.Store, addr string) bool {
	t.Helper()
	subs, err := st.ListSubscribers(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if strings.EqualFold(s.Email, addr) || s.Phone == addr {
			return true
		}
	}
	return false
}
