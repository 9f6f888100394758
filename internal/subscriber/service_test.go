package subscriber_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/subscriber"
)

func TestCreate(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	sub, err := b.svc.Create(ctx, input("email", "manager@oakview-care.example", "phone", "07400 123456", "name", "Alex Morgan",
		"organisation", "Oakview Care Home", "components", "atlas-sync,emar"))
	if err != nil {
		t.Fatal(err)
	}
	if sub.ID == 0 || sub.Phone != "+447400123456" || sub.Name != "Alex Morgan" || sub.EmailConfirmedAt != nil || sub.SMSConfirmedAt != nil ||
		strings.Join(sub.Components, ",") != "atlas-sync,emar" {
		t.Errorf("created %+v", sub)
	}
	if len(b.email.sent())+len(b.sms.sent()) != 0 {
		t.Error("Create sent a message")
	}
	for _, in := range []subscriber.Input{
		input("email", "Manager@Oakview-Care.example", "components", "emar"),
		input("phone", "+44 7400 123456", "components", "emar"),
	} {
		if _, err := b.svc.Create(ctx, in); !errors.Is(err, subscriber.ErrConflict) || !errors.Is(err, store.ErrConflict) {
			t.Errorf("same address: %v", err)
		}
	}
	_, err = b.svc.Create(ctx, input("email", "x@example.org", "components", "lunch"))
	expectField(t, err, "components", subscriber.ErrUnknownComponent, "")
	if storeHas(t, b.st, "x@example.org") {
		t.Error("a refused subscriber was stored")
	}

	// Confirmed, with the phone kept but not used.
	in := input("email", "deputy@riverside-care.example", "phone", "+447400123499", "components", "capa", "channels", "email")
	in.Confirmed = true
	if sub, err = b.svc.Create(ctx, in); err != nil {
		t.Fatal(err)
	}
	if sub.EmailConfirmedAt == nil || sub.SMSConfirmedAt != nil || sub.SMSOptedOutAt == nil || sub.EmailOptedOutAt != nil {
		t.Errorf("confirmed email-only subscriber %+v", sub)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	id, err := b.st.CreateSubscriber(ctx, store.NewSubscriber{Email: "sam@riverside-care.example", Phone: "+447400123456", Name: "Sam",
		Components: []string{"emar"}, ConfirmEmail: true, ConfirmSMS: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.st.CreateSubscriber(ctx, store.NewSubscriber{Email: "jo@hillcrest.example", Components: []string{"capa"}}); err != nil {
		t.Fatal(err)
	}

	sub, err := b.svc.Update(ctx, id, input("name", " Sam Patel ", "organisation", "Riverside Care", "components", "atlas-sync,capa", "channels", "email"))
	if err != nil {
		t.Fatal(err)
	}
	if sub.Name != "Sam Patel" || sub.Organisation != "riverside-care" || strings.Join(sub.Components, ",") != "atlas-sync,capa" ||
		sub.SMSOptedOutAt == nil || sub.EmailOptedOutAt != nil || sub.EmailConfirmedAt == nil || sub.Phone != "+447400123456" {
		t.Errorf("after update %+v", sub)
	}
	// The organisation named is made, keyed by its slug.
	if org, err := b.st.GetOrganisation(ctx, "riverside-care"); err != nil || org.Name != "Riverside Care" || org.Contacts != 1 {
		t.Errorf("organisation %+v (%v)", org, err)
	}
	// Back on SMS; a new email address waits for confirmation again.
	sub, err = b.svc.Update(ctx, id, input("email", "sam.patel@riverside-care.example", "channels", "email,sms"))
	if err != nil || sub.Email != "sam.patel@riverside-care.example" || sub.EmailConfirmedAt != nil || sub.SMSOptedOutAt != nil {
		t.Errorf("after email change %+v, %v", sub, err)
	}
	if _, err := b.svc.Update(ctx, id, input("email", "JO@hillcrest.example")); !errors.Is(err, subscriber.ErrConflict) {
		t.Errorf("taken address: %v", err)
	}
	_, err = b.svc.Update(ctx, id, input("phone", "07700 900123"))
	expectField(t, err, "phone", nil, "")
	_, err = b.svc.Update(ctx, id, input("email", "", "phone", ""))
	expectField(t, err, "email", subscriber.ErrNoAddress, "a subscriber needs an email address, a phone number or both")
	_, err = b.svc.Update(ctx, id, input("components", ""))
	expectField(t, err, "components", subscriber.ErrNoComponents, "")
	// Channels are checked against the addresses the subscriber keeps.
	_, err = b.svc.Update(ctx, id, input("phone", "", "channels", "sms"))
	expectField(t, err, "channels", subscriber.ErrChannelNeedsAddress, "")
	if _, err := b.svc.Update(ctx, 999999, input("name", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown subscriber: %v", err)
	}
	// Removing the phone keeps the email, confirmed.
	in := input("phone", "")
	in.Confirmed = true
	sub, err = b.svc.Update(ctx, id, in)
	if err != nil || sub.Phone != "" || sub.EmailConfirmedAt == nil || sub.Name != "Sam Patel" {
		t.Errorf("after phone removal %+v, %v", sub, err)
	}
}

func TestImport(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	existing, err := b.st.CreateSubscriber(ctx, store.NewSubscriber{Email: "manager@oakview-care.example", Name: "Old name", Components: []string{"capa"}, ConfirmEmail: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.st.CreateSubscriber(ctx, store.NewSubscriber{Phone: "+447400123450", Components: []string{"capa"}}); err != nil {
		t.Fatal(err)
	}
	snap := subscriber.NewSnapshot(example.Components())

	created, _, err := b.svc.Import(ctx, snap, input("email", "manager@oakview-care.example", "phone", "", "name", "Alex Morgan",
		"organisation", "Oakview Care Home", "components", "atlas-sync,emar"))
	if err != nil || created {
		t.Fatalf("update row: created %v, %v", created, err)
	}
	if sub, _ := b.st.GetSubscriber(ctx, existing); sub.Name != "Alex Morgan" || strings.Join(sub.Components, ",") != "atlas-sync,emar" || sub.EmailConfirmedAt == nil {
		t.Errorf("updated %+v", sub)
	}
	created, _, err = b.svc.Import(ctx, snap, input("email", "deputy@riverside-care.example", "phone", "07400 123451", "name", "Sam", "components", "capa"))
	if err != nil || !created {
		t.Fatalf("new row: created %v, %v", created, err)
	}
	if !storeHas(t, b.st, "+447400123451") {
		t.Error("the phone was not stored in E.164")
	}
	_, _, err = b.svc.Import(ctx, snap, input("email", "manager@oakview-care.example", "phone", "+447400123450", "components", "emar"))
	if !errors.Is(err, subscriber.ErrConflict) {
		t.Errorf("two subscribers: %v", err)
	}
	_, _, err = b.svc.Import(ctx, snap, input("email", "", "phone", "", "components", "emar"))
	expectField(t, err, "email", subscriber.ErrNoAddress, "")
	_, _, err = b.svc.Import(ctx, snap, input("email", "new@hillcrest.example", "components", "lunch"))
	expectField(t, err, "components", subscriber.ErrUnknownComponent, `unknown component "lunch"`)

	// A component deleted since the snapshot was taken.
	if err := b.st.DeleteComponent(ctx, "capa", true); err != nil {
		t.Fatal(err)
	}
	_, _, err = b.svc.Import(ctx, snap, input("email", "new@hillcrest.example", "components", "capa"))
	expectField(t, err, "components", subscriber.ErrUnknownComponent, "a component does not exist")

	in := input("email", "night@hillcrest.example", "phone", "07400 123452", "components", "emar")
	in.Confirmed = true
	if _, _, err := b.svc.Import(ctx, snap, in); err != nil {
		t.Fatal(err)
	}
	subs, _ := b.st.ListSubscribers(ctx, 0, 100)
	for _, s := range subs {
		if s.Email == "night@hillcrest.example" && (s.EmailConfirmedAt == nil || s.SMSConfirmedAt == nil) {
			t.Errorf("confirmed import left %+v unconfirmed", s)
		}
		if s.Email == "deputy@riverside-care.example" && s.EmailConfirmedAt != nil {
			t.Errorf("unconfirmed import confirmed %+v", s)
		}
	}
}
