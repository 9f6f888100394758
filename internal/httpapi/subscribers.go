package httpapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/email"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/store"
)

// subscriberInput is the body of POST and PATCH /v1/subscribers. In a PATCH
// absent fields stay as they are.
type subscriberInput struct {
	Email        *string   `json:"email"`
	Phone        *string   `json:"phone"`
	Name         *string   `json:"name"`
	Organisation *string   `json:"organisation"`
	Components   *[]string `json:"components"`
	// Channels lists the channels to use (default: every channel with an
	// address). An address whose channel is not listed is kept but opted
	// out.
	Channels *[]string `json:"channels"`
	// Confirmed marks the used channels' addresses as confirmed: the
	// administrator vouches for them. Otherwise each waits for double
	// opt-in (the person confirms from the subscribe page).
	Confirmed *bool `json:"confirmed"`
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// cleanEmail trims an email address and checks it; "" stays "".
func cleanEmail(field, v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", nil
	}
	if err := email.CheckAddress(v); err != nil {
		return "", fail(http.StatusUnprocessableEntity, field, "%s is not an email address (want name@example.org)", field)
	}
	return v, nil
}

// cleanPhone normalises a mobile number to E.164; "" stays "".
func (a *API) cleanPhone(field, v string) (string, error) {
	if strings.TrimSpace(v) == "" {
		return "", nil
	}
	n, err := phone.Normalize(v, a.cfg.PhoneRegion)
	if err != nil {
		// The error states the reason without repeating the number.
		return "", fail(http.StatusUnprocessableEntity, field, "%s: %v", field, err)
	}
	return n, nil
}

// cleanComponents checks component keys against the catalog and drops
// repeats; at least one is required.
func (a *API) cleanComponents(ctx context.Context, keys []string) ([]string, error) {
	if len(keys) == 0 {
		return nil, fail(http.StatusUnprocessableEntity, "components", "components is required: name at least one component key")
	}
	if len(keys) > event.MaxComponents {
		return nil, fail(http.StatusUnprocessableEntity, "components", "components names more than %d keys", event.MaxComponents)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if !event.ValidKey(k) {
			return nil, fail(http.StatusUnprocessableEntity, "components", "%.60q is not a component key", k)
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	known, err := a.d.Store.KnownComponents(ctx, out)
	if err != nil {
		return nil, err
	}
	for _, k := range out {
		if !known[k] {
			return nil, fail(http.StatusUnprocessableEntity, "components", "unknown component %q", k)
		}
	}
	return out, nil
}

// checkChannels validates a channel list against the addresses the
// subscriber will have.
func checkChannels(chs []string, emailAddr, phoneNum string) error {
	for _, ch := range chs {
		switch ch {
		case deliver.ChannelEmail:
			if emailAddr == "" {
				return fail(http.StatusUnprocessableEntity, "channels", "channel email needs an email address")
			}
		case deliver.ChannelSMS:
			if phoneNum == "" {
				return fail(http.StatusUnprocessableEntity, "channels", "channel sms needs a phone number")
			}
		default:
			return fail(http.StatusUnprocessableEntity, "channels", "unknown channel %q (email or sms)", ch)
		}
	}
	return nil
}

func (a *API) cleanNames(in subscriberInput) (name, org *string, err error) {
	if in.Name != nil {
		v := strings.TrimSpace(*in.Name)
		if err := checkText("name", v, maxNameLen, false); err != nil {
			return nil, nil, err
		}
		name = &v
	}
	if in.Organisation != nil {
		v := strings.TrimSpace(*in.Organisation)
		if err := checkText("organisation", v, maxNameLen, false); err != nil {
			return nil, nil, err
		}
		org = &v
	}
	return name, org, nil
}

func addressConflict() error {
	return fail(http.StatusConflict, "", "a subscriber with this email address or phone number already exists")
}

func (a *API) createSubscriber(w http.ResponseWriter, r *http.Request) error {
	var in subscriberInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	emailAddr, err := cleanEmail("email", deref(in.Email))
	if err != nil {
		return err
	}
	phoneNum, err := a.cleanPhone("phone", deref(in.Phone))
	if err != nil {
		return err
	}
	if emailAddr == "" && phoneNum == "" {
		return fail(http.StatusUnprocessableEntity, "email", "give an email address, a phone number or both")
	}
	name, org, err := a.cleanNames(in)
	if err != nil {
		return err
	}
	components, err := a.cleanComponents(r.Context(), deref(in.Components))
	if err != nil {
		return err
	}
	var channels []string
	if in.Channels != nil {
		channels = *in.Channels
		if err := checkChannels(channels, emailAddr, phoneNum); err != nil {
			return err
		}
	} else {
		if emailAddr != "" {
			channels = append(channels, deliver.ChannelEmail)
		}
		if phoneNum != "" {
			channels = append(channels, deliver.ChannelSMS)
		}
	}
	confirmed := deref(in.Confirmed)
	n := store.NewSubscriber{
		Email: emailAddr, Phone: phoneNum, Name: deref(name), Organisation: deref(org), Components: components,
		ConfirmEmail: confirmed && slices.Contains(channels, deliver.ChannelEmail),
		ConfirmSMS:   confirmed && slices.Contains(channels, deliver.ChannelSMS),
	}
	var optOut []string
	if emailAddr != "" && !slices.Contains(channels, deliver.ChannelEmail) {
		optOut = append(optOut, deliver.ChannelEmail)
	}
	if phoneNum != "" && !slices.Contains(channels, deliver.ChannelSMS) {
		optOut = append(optOut, deliver.ChannelSMS)
	}
	id, err := a.d.Store.AddSubscriber(r.Context(), n, optOut)
	switch {
	case errors.Is(err, store.ErrConflict):
		return addressConflict()
	case errors.Is(err, store.ErrNotFound):
		return fail(http.StatusUnprocessableEntity, "components", "a component does not exist")
	case err != nil:
		return err
	}
	sub, err := a.d.Store.GetSubscriber(r.Context(), id)
	if err != nil {
		return err
	}
	a.d.Log.InfoContext(r.Context(), "subscriber created", "subscriber_id", id, "confirmed", confirmed)
	w.Header().Set("Location", "/v1/subscribers/"+strconv.FormatInt(id, 10))
	writeJSON(w, http.StatusCreated, sub)
	return nil
}

// subscriberID parses the {id} of the path; anything else is 404.
func subscriberID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fail(http.StatusNotFound, "", "not found")
	}
	return id, nil
}

func (a *API) getSubscriber(w http.ResponseWriter, r *http.Request) error {
	id, err := subscriberID(r)
	if err != nil {
		return err
	}
	sub, err := a.d.Store.GetSubscriber(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sub)
	return nil
}

func (a *API) listSubscribers(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := pageQuery(r)
	if err != nil {
		return err
	}
	subs, err := a.d.Store.ListSubscribers(r.Context(), after, int(limit)+1)
	if err != nil {
		return err
	}
	var next *string
	if len(subs) > int(limit) {
		subs = subs[:limit]
		c := strconv.FormatInt(subs[len(subs)-1].ID, 10)
		next = &c
	}
	if subs == nil {
		subs = []store.Subscriber{}
	}
	writeJSON(w, http.StatusOK, struct {
		Subscribers []store.Subscriber `json:"subscribers"`
		Next        *string            `json:"next"`
	}{subs, next})
	return nil
}

func (a *API) patchSubscriber(w http.ResponseWriter, r *http.Request) error {
	id, err := subscriberID(r)
	if err != nil {
		return err
	}
	var in subscriberInput
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	cur, err := a.d.Store.GetSubscriber(r.Context(), id)
	if err != nil {
		return err
	}
	var u store.SubscriberUpdate
	emailAddr, phoneNum := cur.Email, cur.Phone
	if in.Email != nil {
		if emailAddr, err = cleanEmail("email", *in.Email); err != nil {
			return err
		}
		u.Email = &emailAddr
	}
	if in.Phone != nil {
		if phoneNum, err = a.cleanPhone("phone", *in.Phone); err != nil {
			return err
		}
		u.Phone = &phoneNum
	}
	if emailAddr == "" && phoneNum == "" {
		return fail(http.StatusUnprocessableEntity, "email", "a subscriber needs an email address, a phone number or both")
	}
	if u.Name, u.Organisation, err = a.cleanNames(in); err != nil {
		return err
	}
	if in.Components != nil {
		components, err := a.cleanComponents(r.Context(), *in.Components)
		if err != nil {
			return err
		}
		u.Components = &components
	}
	uses := func(ch string) bool { return in.Channels == nil || slices.Contains(*in.Channels, ch) }
	if in.Channels != nil {
		if err := checkChannels(*in.Channels, emailAddr, phoneNum); err != nil {
			return err
		}
		for ch, addr := range map[string]string{deliver.ChannelEmail: emailAddr, deliver.ChannelSMS: phoneNum} {
			switch {
			case addr == "":
			case uses(ch):
				u.OptIn = append(u.OptIn, ch)
			default:
				u.OptOut = append(u.OptOut, ch)
			}
		}
	}
	if deref(in.Confirmed) {
		u.ConfirmEmail = emailAddr != "" && uses(deliver.ChannelEmail)
		u.ConfirmSMS = phoneNum != "" && uses(deliver.ChannelSMS)
	}
	err = a.d.Store.UpdateSubscriber(r.Context(), id, u)
	switch {
	case errors.Is(err, store.ErrConflict):
		return addressConflict()
	case errors.Is(err, store.ErrNoAddress):
		return fail(http.StatusUnprocessableEntity, "email", "a subscriber needs an email address, a phone number or both")
	case err != nil:
		return err
	}
	sub, err := a.d.Store.GetSubscriber(r.Context(), id)
	if err != nil {
		return err
	}
	a.d.Log.InfoContext(r.Context(), "subscriber updated", "subscriber_id", id)
	writeJSON(w, http.StatusOK, sub)
	return nil
}

func (a *API) deleteSubscriber(w http.ResponseWriter, r *http.Request) error {
	id, err := subscriberID(r)
	if err != nil {
		return err
	}
	if err := a.d.Store.DeleteSubscriber(r.Context(), id); err != nil {
		return err
	}
	a.d.Log.InfoContext(r.Context(), "subscriber deleted", "subscriber_id", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
