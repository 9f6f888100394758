package render

import "unicode/utf8"

// SMS encodings, as reported by Segments and SMS.Encoding.
const (
	// EncodingGSM7 is the GSM 03.38 default alphabet with its extension
	// table: 160 septets in a single segment, 153 per segment when the
	// message is concatenated.
	EncodingGSM7 = "GSM-7"
	// EncodingUCS2 is used as soon as one character lies outside GSM-7:
	// 70 UTF-16 code units in a single segment, 67 per concatenated segment.
	EncodingUCS2 = "UCS-2"
)

// Segment capacities in septets (GSM-7) and UTF-16 code units (UCS-2). A
// concatenated segment loses room to its user data header.
const (
	gsmSingle   = 160
	gsmMulti    = 153
	ucs2Single  = 70
	ucs2Multi   = 67
	ellipsisGSM = "..."
	ellipsisUCS = "…"
)

// gsmASCII is the cost in septets of each ASCII character: 1 for the basic
// alphabet, 2 for the extension table (escape + character), 0 when the
// character is not in GSM-7 at all (most control characters and '`').
var gsmASCII = func() (t [utf8.RuneSelf]uint8) {
	const basic = "\n\r !\"#$%&'()*+,-./0123456789:;<=>?@" +
		"ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
	const extended = "\f^{}\\[~]|"
	for i := 0; i < len(basic); i++ {
		t[basic[i]] = 1
	}
	for i := 0; i < len(extended); i++ {
		t[extended[i]] = 2
	}
	return t
}()

// gsmSeptets reports the cost of r in GSM-7 septets, or 0 when r cannot be
// written in GSM-7 (the message must then be sent as UCS-2).
func gsmSeptets(r rune) int {
	if r < utf8.RuneSelf {
		return int(gsmASCII[r])
	}
	switch r {
	case '£', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', 'Ø', 'ø', 'Å', 'å',
		'Δ', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ',
		'Æ', 'æ', 'ß', 'É', '¤', '¡', 'Ä', 'Ö', 'Ñ', 'Ü', '§', '¿',
		'ä', 'ö', 'ñ', 'ü', 'à':
		return 1
	case '€':
		return 2
	}
	return 0
}

// utf16Units reports how many UTF-16 code units r takes in UCS-2 (strictly
// UTF-16, which is what phones and providers use): 2 for characters outside
// the Basic Multilingual Plane, such as most emoji.
func utf16Units(r rune) int {
	if r >= 0x10000 {
		return 2
	}
	return 1
}

// Segments reports the encoding an SMS with body s is sent in and how many
// segments (billable parts) it takes.
//
// s is GSM-7 when every character is in the GSM 03.38 basic alphabet or its
// extension table (€ [ ] { } \ ~ ^ | and form feed count as two septets);
// otherwise the whole message is UCS-2 and counted in UTF-16 code units, so
// that an emoji outside the Basic Multilingual Plane counts as two. One
// segment holds 160 septets or 70 units; a longer message is split into
// segments of 153 septets or 67 units, and as on real handsets an escape
// sequence or a surrogate pair is never split across two segments. Invalid
// UTF-8 bytes count as U+FFFD. The empty string is GSM-7 with 0 segments.
func Segments(s string) (encoding string, segments int) {
	septets, gsm := 0, true
	for _, r := range s {
		c := gsmSeptets(r)
		if c == 0 {
			gsm = false
			break
		}
		septets += c
	}
	if gsm {
		if septets == 0 {
			return EncodingGSM7, 0
		}
		if septets <= gsmSingle {
			return EncodingGSM7, 1
		}
		return EncodingGSM7, pack(s, gsmMulti, gsmSeptets)
	}
	units := 0
	for _, r := range s {
		units += utf16Units(r)
	}
	if units <= ucs2Single {
		return EncodingUCS2, 1
	}
	return EncodingUCS2, pack(s, ucs2Multi, utf16Units)
}

// pack counts the segments of per units each that s fills when no
// character's units are split across two segments.
func pack(s string, per int, cost func(rune) int) int {
	segments, used := 1, 0
	for _, r := range s {
		c := cost(r)
		if used+c > per {
			segments++
			used = 0
		}
		used += c
	}
	return segments
}

// capacity is how many septets or units fit in limit segments, ignoring the
// rule that a character is never split across segments (which can only cost
// one unit per segment boundary).
func capacity(limit, single, multi int) int {
	if limit <= 1 {
		return single
	}
	return limit * multi
}
