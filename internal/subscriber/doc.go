// Package subscriber holds the rules about subscribers that every entry
// point shares: what a subscriber's details must be, and the double opt-in
// that turns a request from the public subscribe page into confirmed
// addresses. Nothing here knows about HTTP; callers choose the answer.
//
// # Validation
//
// [Service.Check] is the one validation and normalisation of a subscriber's
// details, whatever they come from: the JSON API ([Service.Create],
// [Service.Update]), a CSV import ([Service.Import]) or the subscribe page
// ([Service.CheckRequest]). The rules:
//
//   - email is a bare address (email.CheckAddress), surrounding spaces
//     trimmed;
//   - phone is a number that can receive texts, normalised to E.164 with
//     phone.Normalize and the configured region;
//   - at least one of the two is required;
//   - name and organisation are trimmed, at most [MaxNameLen] characters
//     and free of control characters;
//   - components are 1 to event.MaxComponents well-formed keys, all known
//     to the catalog, repeats dropped;
//   - channels, when given, name only email and sms, each with an address;
//     by default every channel with an address is used.
//
// A refusal is an [*InvalidError] holding one [*FieldError] per field at
// fault, in the order email, phone, name, organisation, components,
// channels, so errors.As(err, &fe) finds the first. A FieldError names the
// field as the JSON API calls it, says why in English (the text the JSON API
// answers) and wraps a sentinel error of this package, or for the phone
// field phone.Normalize's error, so that each caller can word it its own
// way. Other errors are the store's (store.ErrNotFound,
// store.IsUnavailable).
//
// # Double opt-in
//
// [Service.Subscribe] records a request from the subscribe page without
// confirming anything: new addresses become unconfirmed subscribers, known
// ones are left as they are, and every address is sent a way to confirm it
// (an email link checked by [Service.CheckConfirm] and [Service.Confirm], a
// texted code checked by [Service.VerifyCode]) directly through the
// channel's deliver.Sender, not through the delivery ledger. A known address
// gets a message too, so the requester cannot tell new from known
// addresses.
package subscriber
