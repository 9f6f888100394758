package subscriber

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/email"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/store"
)

// MaxNameLen is the most characters a name or organisation may have.
const MaxNameLen = 200

// Input is a subscriber's details as someone gave them. A nil field was
// not given: for a new subscriber it is empty (and components are then
// missing), in an update it stays as it is.
type Input struct {
	Email, Phone       *string
	Name, Organisation *string
	// WebhookURL, TeamsURL and SlackURL are destinations ("" removes one).
	WebhookURL, TeamsURL, SlackURL *string
	// Role is the subscriber's part in their organisation: "primary"
	// (default) or "escalation".
	Role       *string
	Components *[]string
	// Channels lists the channels to use (deliver.ChannelEmail,
	// deliver.ChannelSMS, and the destinations' ChannelWebhook,
	// ChannelTeams, ChannelSlack); nil means every channel with an address.
	// An address whose channel is not listed is kept but opted out.
	Channels *[]string
	// Confirmed marks the used channels' addresses as confirmed: an
	// administrator vouches for them. Otherwise each waits for double
	// opt-in. Ignored by CheckRequest and Subscribe.
	Confirmed bool
}

// Details are a subscriber's details once checked: trimmed, the phone
// number in E.164, the components known and without repeats.
type Details struct {
	Email, Phone       string // "" for none
	Name, Organisation string
	// WebhookURL, TeamsURL and SlackURL are destinations ("" for none).
	WebhookURL, TeamsURL, SlackURL string
	// Role is store.RolePrimary or store.RoleEscalation.
	Role       string
	Components []string
	// Channels are the channels to use, each with an address.
	Channels []string
}

// Uses reports whether the subscriber is to be reached on channel.
func (d Details) Uses(channel string) bool { return slices.Contains(d.Channels, channel) }

// Catalog says which component keys exist; *store.Store is one, and so is
// a Snapshot.
type Catalog interface {
	KnownComponents(ctx context.Context, keys []string) (map[string]bool, error)
}

// Snapshot is a catalog held in memory, for checking many inputs against
// one listing (a CSV import, a form drawn from the listing).
type Snapshot map[string]bool

// NewSnapshot returns the keys of cs as a Snapshot.
func NewSnapshot(cs []store.Component) Snapshot {
	s := make(Snapshot, len(cs))
	for _, c := range cs {
		s[c.Key] = true
	}
	return s
}

// KnownComponents reports which of keys are in the snapshot.
func (s Snapshot) KnownComponents(_ context.Context, keys []string) (map[string]bool, error) {
	out := make(map[string]bool, len(keys))
	for _, k := range keys {
		if s[k] {
			out[k] = true
		}
	}
	return out, nil
}

// Check validates and normalises the details of a new subscriber, looking
// components up in cat. A refusal is an *InvalidError; any other error is
// cat's.
func (s *Service) Check(ctx context.Context, cat Catalog, in Input) (Details, error) {
	var p problems
	d, err := s.check(ctx, cat, nil, in, &p)
	if err != nil {
		return Details{}, err
	}
	return d, p.err()
}

// check applies in to cur (nil for a new subscriber) and returns the
// details the subscriber would have, adding what is wrong to p. Its error
// is cat's, and only when nothing was found wrong before the lookup.
func (s *Service) check(ctx context.Context, cat Catalog, cur *store.Subscriber, in Input, p *problems) (Details, error) {
	var d Details
	if cur != nil {
		d = Details{Email: cur.Email, Phone: cur.Phone, Name: cur.Name, Organisation: cur.Organisation, Components: cur.Components,
			WebhookURL: cur.WebhookURL, TeamsURL: cur.TeamsURL, SlackURL: cur.SlackURL, Role: cur.Role}
	}
	if in.Role != nil {
		switch r := strings.ToLower(strings.TrimSpace(*in.Role)); r {
		case "", store.RolePrimary:
			d.Role = store.RolePrimary
		case store.RoleEscalation:
			d.Role = r
		default:
			p.add("role", ErrBadRole, `role must be "primary" or "escalation"`)
		}
	}
	if d.Role == "" {
		d.Role = store.RolePrimary
	}
	if in.Email != nil {
		d.Email = checkEmail(*in.Email, p)
	}
	if in.Phone != nil {
		d.Phone = s.checkPhone(*in.Phone, p)
	}
	for _, f := range [...]struct {
		field string
		in    *string
		out   *string
	}{{"webhook_url", in.WebhookURL, &d.WebhookURL}, {"teams_url", in.TeamsURL, &d.TeamsURL}, {"slack_url", in.SlackURL, &d.SlackURL}} {
		if f.in != nil {
			*f.out = s.checkDestination(ctx, f.field, *f.in, p)
		}
	}
	if d.Email == "" && d.Phone == "" && d.WebhookURL == "" && d.TeamsURL == "" && d.SlackURL == "" &&
		!p.has("email", "phone", "webhook_url", "teams_url", "slack_url") {
		if cur == nil {
			p.add("email", ErrNoAddress, "give an email address, a phone number or both")
		} else {
			p.add("email", ErrNoAddress, noAddressLeft)
		}
	}
	if in.Name != nil {
		d.Name = checkName("name", *in.Name, p)
	}
	if in.Organisation != nil {
		d.Organisation = checkName("organisation", *in.Organisation, p)
	}
	if in.Components != nil || cur == nil {
		var keys []string
		if in.Components != nil {
			keys = *in.Components
		}
		var err error
		if d.Components, err = checkComponents(ctx, cat, keys, p); err != nil {
			return Details{}, err
		}
	}
	d.Channels = checkChannels(in.Channels, d.addresses(), p)
	return d, nil
}

// addresses are the subscriber's address on each channel ("" for none).
func (d Details) addresses() map[string]string {
	return map[string]string{
		deliver.ChannelEmail: d.Email, deliver.ChannelSMS: d.Phone,
		deliver.ChannelWebhook: d.WebhookURL, deliver.ChannelTeams: d.TeamsURL, deliver.ChannelSlack: d.SlackURL,
	}
}

// MaxURLLen is the longest destination URL accepted.
const MaxURLLen = 2048

// checkDestination trims a destination URL and checks it: https, at most
// MaxURLLen characters, and (with a DestinationChecker) resolving only to
// addresses crier may call. "" stays "".
func (s *Service) checkDestination(ctx context.Context, field, v string, p *problems) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	if len(v) > MaxURLLen {
		p.add(field, ErrBadDestination, fmt.Sprintf("%s is longer than %d characters", field, MaxURLLen))
		return ""
	}
	u, err := url.Parse(v)
	switch {
	case err != nil || u.Host == "" || u.User != nil:
		p.add(field, ErrBadDestination, field+" must be an https URL such as https://hooks.example.org/crier, without a user or password")
		return ""
	case u.Scheme != "https":
		p.add(field, ErrBadDestination, field+" must be an https URL")
		return ""
	}
	if s.checkURL != nil {
		if err := s.checkURL(ctx, v); err != nil {
			p.add(field, ErrBadDestination, field+" is refused: "+err.Error())
			return ""
		}
	}
	return v
}

// noAddressLeft refuses a change that would leave no address.
const noAddressLeft = "a subscriber needs an email address, a phone number or both"

// checkEmail trims an email address and checks it; "" stays "".
func checkEmail(v string, p *problems) string {
	v = strings.TrimSpace(v)
	if v != "" && email.CheckAddress(v) != nil {
		p.add("email", ErrBadEmail, "email is not an email address (want name@example.org)")
		return ""
	}
	return v
}

// checkPhone normalises a mobile number to E.164; "" stays "".
func (s *Service) checkPhone(v string, p *problems) string {
	if strings.TrimSpace(v) == "" {
		return ""
	}
	n, err := phone.Normalize(v, s.cfg.PhoneRegion)
	if err != nil {
		// The error states the reason without repeating the number.
		p.add("phone", err, "phone: "+err.Error())
		return ""
	}
	return n
}

// checkName trims a name or organisation and checks it is one line of at
// most MaxNameLen characters.
func checkName(field, v string, p *problems) string {
	v = strings.TrimSpace(v)
	if n := utf8.RuneCountInString(v); n > MaxNameLen {
		p.add(field, ErrTooLong, fmt.Sprintf("%s is %d characters, more than the limit of %d", field, n, MaxNameLen))
		return v
	}
	for _, r := range v {
		if r == 0 || event.UnsafeInLine(r) {
			p.add(field, ErrControlChar, field+" must not contain control or formatting characters")
			break
		}
	}
	return v
}

// CheckComponents checks a list of component keys against cat and drops
// repeats; at least one is required. A refusal is an *InvalidError for the
// components field; any other error is cat's.
func CheckComponents(ctx context.Context, cat Catalog, keys []string) ([]string, error) {
	var p problems
	out, err := checkComponents(ctx, cat, keys, &p)
	if err != nil {
		return nil, err
	}
	return out, p.err()
}

func checkComponents(ctx context.Context, cat Catalog, keys []string, p *problems) ([]string, error) {
	const field = "components"
	if len(keys) == 0 {
		p.add(field, ErrNoComponents, "components is required: name at least one component key")
		return nil, nil
	}
	if len(keys) > event.MaxComponents {
		p.add(field, ErrTooManyComponents, fmt.Sprintf("components names more than %d keys", event.MaxComponents))
		return nil, nil
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if !event.ValidKey(k) {
			p.add(field, ErrBadComponentKey, fmt.Sprintf("%.60q is not a component key", k))
			return nil, nil
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	known, err := cat.KnownComponents(ctx, out)
	if err != nil {
		if len(p.list) > 0 {
			return nil, nil // the input is refused already
		}
		return nil, err
	}
	for _, k := range out {
		if !known[k] {
			p.add(field, ErrUnknownComponent, fmt.Sprintf("unknown component %q", k))
			return nil, nil
		}
	}
	return out, nil
}

// channelNeeds says what each channel needs, for refusals.
var channelNeeds = map[string]string{
	deliver.ChannelEmail: "an email address", deliver.ChannelSMS: "a phone number",
	deliver.ChannelWebhook: "a webhook_url", deliver.ChannelTeams: "a teams_url", deliver.ChannelSlack: "a slack_url",
}

// checkChannels checks a channel list against the addresses the
// subscriber will have; nil means every channel with an address.
func checkChannels(chs *[]string, addrs map[string]string, p *problems) []string {
	if chs == nil {
		var out []string
		for _, ch := range deliver.Channels {
			if addrs[ch] != "" {
				out = append(out, ch)
			}
		}
		return out
	}
	const field = "channels"
	for _, ch := range *chs {
		addr, known := addrs[ch]
		switch {
		case !known:
			p.add(field, ErrUnknownChannel, fmt.Sprintf("unknown channel %q (%s)", ch, strings.Join(deliver.Channels, ", ")))
		case addr == "":
			p.add(field, ErrChannelNeedsAddress, fmt.Sprintf("channel %s needs %s", ch, channelNeeds[ch]))
		}
		if p.has(field) {
			break
		}
	}
	return *chs
}
