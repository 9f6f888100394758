// Package phone normalises the phone numbers subscribers give for SMS
// notifications to E.164 and masks them for logs.
//
// Only numbers that can receive a text are accepted: libphonenumber's MOBILE
// type, and FIXED_LINE_OR_MOBILE for regions (such as the US and Canada) whose
// numbering plan does not tell the two apart. Fixed lines, premium-rate,
// toll-free, VoIP, pager and similar numbers are refused with ErrNotMobile;
// anything that is not a valid number at all is refused with ErrInvalid.
package phone

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// Sentinel errors returned (wrapped, with a human-readable reason) by
// Normalize. Test for them with errors.Is.
var (
	// ErrInvalid means the input is not a valid phone number: not a number,
	// too short or too long, an unknown country code or a number that does
	// not exist in the numbering plan of its country.
	ErrInvalid = errors.New("invalid phone number")
	// ErrNotMobile means the input is a valid number that cannot receive
	// text messages: a fixed line, premium-rate, toll-free, VoIP, pager or
	// similar number.
	ErrNotMobile = errors.New("not a mobile phone number")
)

// maxInputLen bounds the work done on untrusted input; libphonenumber itself
// refuses inputs longer than 250 characters.
const maxInputLen = 250

// DefaultRegion interprets numbers written without a country code when no
// region is configured (CRIER_PHONE_REGION): crier's homes are in the UK.
const DefaultRegion = "GB"

// Normalize parses input, a phone number as a person would type it
// ("07400 123456", "+44 7400 123456", "0044 7400 123456", "(201) 555-0123"),
// and returns it in E.164 form ("+447400123456").
//
// defaultRegion is the ISO 3166-1 alpha-2 region ("GB", "US"; case does not
// matter) used to interpret numbers written without an international prefix;
// it may be empty when every input carries one ("+44…"). International
// dialling prefixes of the default region ("00" for GB) are understood.
//
// The error wraps ErrInvalid or ErrNotMobile and states the reason in words.
// It does not repeat the input, so that it can be logged without leaking the
// number.
//
// Normalize is idempotent: Normalize(out, anyRegion) returns out.
func Normalize(input, defaultRegion string) (string, error) {
	num, err := parse(input, defaultRegion)
	if err != nil {
		return "", err
	}
	if num.GetExtension() != "" {
		return "", fmt.Errorf("%w: a number with an extension cannot receive text messages", ErrInvalid)
	}
	switch t := phonenumbers.GetNumberType(num); t {
	case phonenumbers.MOBILE, phonenumbers.FIXED_LINE_OR_MOBILE:
	default:
		return "", fmt.Errorf("%w: it is a %s number; text messages need a mobile number", ErrNotMobile, typeName(t))
	}
	return e164(num)
}

// NormalizeAny is Normalize for a number that is called rather than
// texted (a care home's landline): any valid number without an extension.
func NormalizeAny(input, defaultRegion string) (string, error) {
	num, err := parse(input, defaultRegion)
	if err != nil {
		return "", err
	}
	if num.GetExtension() != "" {
		return "", fmt.Errorf("%w: a number with an extension cannot be dialled directly", ErrInvalid)
	}
	return e164(num)
}

// parse parses and validates a number as Normalize describes.
func parse(input, defaultRegion string) (*phonenumbers.PhoneNumber, error) {
	in := strings.TrimSpace(input)
	if in == "" {
		return nil, fmt.Errorf("%w: the number is empty", ErrInvalid)
	}
	if len(in) > maxInputLen {
		return nil, fmt.Errorf("%w: the input is longer than %d characters", ErrInvalid, maxInputLen)
	}
	region := strings.ToUpper(strings.TrimSpace(defaultRegion))
	if region != "" && !phonenumbers.GetSupportedRegions()[region] {
		return nil, fmt.Errorf("%w: unknown default region %q", ErrInvalid, defaultRegion)
	}
	if region == "" {
		// libphonenumber's marker for "no region: the number must be
		// international".
		region = phonenumbers.UNKNOWN_REGION
	}
	num, err := phonenumbers.Parse(in, region)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, parseReason(err, region))
	}
	if !phonenumbers.IsValidNumber(num) {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, invalidReason(num))
	}
	return num, nil
}

func e164(num *phonenumbers.PhoneNumber) (string, error) {
	out := phonenumbers.Format(num, phonenumbers.E164)
	if !IsE164(out) {
		// Defensive: libphonenumber accepted something it cannot format.
		return "", fmt.Errorf("%w: the number has no E.164 form", ErrInvalid)
	}
	return out, nil
}

func parseReason(err error, region string) string {
	switch {
	case errors.Is(err, phonenumbers.ErrInvalidCountryCode):
		if region == phonenumbers.UNKNOWN_REGION {
			return "the country code is missing or unknown (start with + and the country code, or give a default region)"
		}
		return "the country code is unknown"
	case errors.Is(err, phonenumbers.ErrNotANumber):
		return "it does not look like a phone number"
	case errors.Is(err, phonenumbers.ErrTooShortNSN), errors.Is(err, phonenumbers.ErrTooShortAfterIDD):
		return "it is too short"
	case errors.Is(err, phonenumbers.ErrNumTooLong):
		return "it is too long"
	default:
		return "it cannot be read as a phone number"
	}
}

func invalidReason(num *phonenumbers.PhoneNumber) string {
	switch phonenumbers.IsPossibleNumberWithReason(num) {
	case phonenumbers.TOO_SHORT:
		return "it is too short"
	case phonenumbers.IS_POSSIBLE_LOCAL_ONLY:
		return "it is too short (a local number without its area code?)"
	case phonenumbers.TOO_LONG:
		return "it is too long"
	case phonenumbers.INVALID_COUNTRY_CODE:
		return "the country code is unknown"
	case phonenumbers.INVALID_LENGTH:
		return "it has the wrong number of digits"
	}
	// Possible by length for some kind of number but not valid: compare with
	// the length of a mobile number in the number's country, for a message
	// that tells people what to fix.
	region := phonenumbers.GetRegionCodeForCountryCode(int(num.GetCountryCode()))
	if ex := phonenumbers.GetExampleNumberForType(region, phonenumbers.MOBILE); ex != nil {
		got, want := len(phonenumbers.GetNationalSignificantNumber(num)), len(phonenumbers.GetNationalSignificantNumber(ex))
		switch {
		case got <= want-2:
			return "it is too short for a mobile number"
		case got >= want+2:
			return "it is too long for a mobile number"
		}
	}
	return "no such number exists in its country's numbering plan"
}

func typeName(t phonenumbers.PhoneNumberType) string {
	switch t {
	case phonenumbers.FIXED_LINE:
		return "fixed-line"
	case phonenumbers.TOLL_FREE:
		return "toll-free"
	case phonenumbers.PREMIUM_RATE:
		return "premium-rate"
	case phonenumbers.SHARED_COST:
		return "shared-cost"
	case phonenumbers.VOIP:
		return "VoIP"
	case phonenumbers.PERSONAL_NUMBER:
		return "personal (follow-me)"
	case phonenumbers.PAGER:
		return "pager"
	case phonenumbers.UAN:
		return "universal access"
	case phonenumbers.VOICEMAIL:
		return "voicemail"
	default:
		return "unknown type of"
	}
}

// IsE164 reports whether s has the shape of an E.164 number: "+", a first
// digit 1–9 and at most 15 digits in all. It does not check that the number
// exists; use Normalize for that.
func IsE164(s string) bool {
	if len(s) < 3 || len(s) > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9' {
		return false
	}
	for i := 2; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Mask hides the middle of a phone number for logs: it keeps "+", the country
// code and the last four digits, and replaces every digit in between with
// "*" ("+447400123456" → "+44******3456"). At least a third of the
// characters are always hidden, so short or malformed input keeps less;
// input that is not E.164 keeps at most its last four characters, and input
// of four characters or fewer is hidden completely. The result has the length
// of the input.
func Mask(e164 string) string {
	n := len(e164)
	if n <= 4 {
		return strings.Repeat("*", n)
	}
	kept := n - max(1, n/3)
	tail := min(4, kept, n/2)
	prefix := 0
	if IsE164(e164) {
		prefix = min(1+countryCodeLen(e164[1:]), kept-tail)
	}
	return e164[:prefix] + strings.Repeat("*", n-tail-prefix) + e164[n-tail:]
}

// countryCodeLen returns the length of the country calling code at the start
// of digits (country codes are prefix-free, one to three digits), or 0 when
// none is assigned.
func countryCodeLen(digits string) int {
	for l := 1; l <= 3 && l <= len(digits); l++ {
		cc, err := strconv.Atoi(digits[:l])
		if err != nil {
			return 0
		}
		if phonenumbers.GetRegionCodeForCountryCode(cc) != phonenumbers.UNKNOWN_REGION {
			return l
		}
	}
	return 0
}
