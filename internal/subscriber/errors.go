package subscriber

import (
	"errors"
	"strings"
)

// Sentinel errors wrapped by a [FieldError] (test with errors.Is).
var (
	// ErrBadEmail means the email field is not a bare email address.
	ErrBadEmail = errors.New("not an email address")
	// ErrNoAddress means the subscriber would have neither an email
	// address nor a phone number (reported on the email field).
	ErrNoAddress = errors.New("no email address and no phone number")
	// ErrBadRole: a role other than primary or escalation.
	ErrBadRole = errors.New("unknown role")
	// ErrBadDestination: a webhook, Teams or Slack URL that is not https,
	// not a URL, or that resolves to an address crier must not call.
	ErrBadDestination = errors.New("destination URL refused")
	// ErrTooLong means a name or organisation is longer than MaxNameLen
	// characters.
	ErrTooLong = errors.New("text too long")
	// ErrControlChar means a name or organisation holds a control
	// character (a line break, a NUL).
	ErrControlChar = errors.New("control character in text")
	// ErrNoComponents means no component was named.
	ErrNoComponents = errors.New("no components")
	// ErrTooManyComponents means more than event.MaxComponents keys were
	// named.
	ErrTooManyComponents = errors.New("too many components")
	// ErrBadComponentKey means a component key is not well-formed.
	ErrBadComponentKey = errors.New("not a component key")
	// ErrUnknownComponent means a component is not in the catalog (or was
	// removed while the subscriber was being stored).
	ErrUnknownComponent = errors.New("unknown component")
	// ErrUnknownChannel means a channel is neither email nor sms.
	ErrUnknownChannel = errors.New("unknown channel")
	// ErrChannelNeedsAddress means a channel was chosen without its
	// address.
	ErrChannelNeedsAddress = errors.New("channel without an address")
	// ErrChannelOff means the channel has no sender in this process: the
	// subscribe page does not accept its address, and nothing can be sent
	// on it.
	ErrChannelOff = errors.New("channel not configured")
)

// Errors of the operations on stored subscribers and of the double opt-in.
var (
	// ErrConflict means an address belongs to another subscriber (for an
	// import: the row's email address and phone number belong to two
	// different subscribers). It also wraps store.ErrConflict.
	ErrConflict = errors.New("an address belongs to another subscriber")
	// ErrLinkInvalid is every reason an email confirmation link does not
	// verify: malformed, forged, expired, for another address or for a
	// subscriber that does not exist.
	ErrLinkInvalid = errors.New("confirmation link not valid")
	// ErrCodeRefused is every reason a texted code is refused: none
	// pending, wrong, expired or tried too often. It also wraps the
	// store's reason (store.ErrNotFound, store.ErrCodeWrong,
	// store.ErrCodeExpired, store.ErrCodeSpent).
	ErrCodeRefused = errors.New("confirmation code refused")
)

// FieldError is one broken rule.
type FieldError struct {
	// Field is the input field at fault, as the JSON API names it: email,
	// phone, name, organisation, components or channels.
	Field string
	// Reason says what is wrong in English, naming the field
	// ("email is not an email address (want name@example.org)").
	Reason string
	// Err is one of this package's sentinels, or for the phone field the
	// error of phone.Normalize (wrapping phone.ErrInvalid or
	// phone.ErrNotMobile).
	Err error
}

// Error returns the Reason.
func (e *FieldError) Error() string { return e.Reason }

// Unwrap returns Err.
func (e *FieldError) Unwrap() error { return e.Err }

// InvalidError is a refusal of input that breaks one or more rules.
type InvalidError struct {
	// Fields holds at most one FieldError per field, in the order email,
	// phone, name, organisation, components, channels (CheckRequest puts a
	// channel that is not available first).
	Fields []*FieldError
}

// Error lists the reasons.
func (e *InvalidError) Error() string {
	reasons := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		reasons[i] = f.Reason
	}
	return strings.Join(reasons, "; ")
}

// Unwrap returns the FieldErrors, so that errors.As finds the first and
// errors.Is any sentinel.
func (e *InvalidError) Unwrap() []error {
	out := make([]error, len(e.Fields))
	for i, f := range e.Fields {
		out[i] = f
	}
	return out
}

// problems collects FieldErrors, the first per field.
type problems struct {
	list []*FieldError
}

func (p *problems) add(field string, err error, reason string) {
	if !p.has(field) {
		p.list = append(p.list, &FieldError{Field: field, Reason: reason, Err: err})
	}
}

func (p *problems) has(fields ...string) bool {
	for _, f := range p.list {
		for _, name := range fields {
			if f.Field == name {
				return true
			}
		}
	}
	return false
}

// err is nil without problems, or an *InvalidError.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &InvalidError{Fields: p.list}
}
