package render

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// isBlank reports whether r is whitespace or a control character: the runes
// that oneLine collapses into single spaces.
func isBlank(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r)
}

// oneLine returns s as a single line: invalid UTF-8 becomes U+FFFD, every
// run of whitespace and control characters (CR, LF, tabs, NUL, U+2028, …)
// becomes one space, and leading and trailing blanks are removed. It returns
// s itself, without allocating, when s is already in that form.
func oneLine(s string) string {
	if isOneLine(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s { // invalid bytes decode as utf8.RuneError (U+FFFD)
		if isBlank(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isOneLine reports whether oneLine(s) == s.
func isOneLine(s string) bool {
	prevSpace := true // a leading space is not allowed
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == ' ' {
				if prevSpace {
					return false
				}
				prevSpace = true
			} else {
				if c < 0x20 || c == 0x7f {
					return false
				}
				prevSpace = false
			}
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w == 1 || isBlank(r) {
			return false
		}
		prevSpace = false
		i += w
	}
	return len(s) == 0 || s[len(s)-1] != ' '
}

// multiLine normalises a body of text: invalid UTF-8 becomes U+FFFD, line
// breaks (CRLF, CR, NEL, U+2028, U+2029) become LF, other control
// characters except tab are dropped, trailing blanks are removed from each
// line, runs of more than one empty line become one empty line (a paragraph
// break), and leading and trailing empty lines are removed.
func multiLine(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	newlines := 0 // pending line breaks, written before the next visible text
	var blanks []rune
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		i += w
		switch {
		case r == '\r':
			if i < len(s) && s[i] == '\n' {
				i++
			}
			fallthrough
		case r == '\n' || r == 0x85 || r == 0x2028 || r == 0x2029:
			blanks = blanks[:0]
			if b.Len() > 0 {
				newlines++
			}
		case r == '\t' || (unicode.IsSpace(r) && !unicode.IsControl(r)):
			blanks = append(blanks, r)
		case unicode.IsControl(r):
			// dropped
		default:
			if newlines > 0 {
				b.WriteString("\n\n"[:min(newlines, 2)])
				newlines = 0
			}
			if b.Len() > 0 { // indentation is kept, except before the first line
				for _, sp := range blanks {
					b.WriteRune(sp)
				}
			}
			blanks = blanks[:0]
			b.WriteRune(r)
		}
	}
	return b.String()
}

// paragraphs splits normalised text into paragraphs (separated by an empty
// line), each a list of lines. The HTML template uses it to keep the line
// breaks of a body without trusting the body as HTML.
// Paragraphs splits free text (a body, a runbook) into paragraphs of
// lines, as the email templates' paragraphs function does, after
// normalising line endings and control characters.
func Paragraphs(s string) [][]string { return paragraphs(multiLine(s)) }

func paragraphs(s string) [][]string {
	var out [][]string
	for p := range strings.SplitSeq(s, "\n\n") {
		if p = strings.Trim(p, "\n"); p != "" {
			out = append(out, strings.Split(p, "\n"))
		}
	}
	return out
}

// capRunes shortens a single line to at most max runes, ending it with "…"
// when it had to be cut. It never cuts inside a character or between a
// character and the marks, joiners or modifiers that belong to it.
func capRunes(s string, max int) string {
	if max <= 0 || utf8.RuneCountInString(s) <= max {
		return s
	}
	cut, n := 0, 0
	for i := range s {
		if n == max-1 { // keep room for the ellipsis
			cut = i
			break
		}
		n++
	}
	cut = graphemeCut(s, cut)
	return strings.TrimRight(s[:cut], " ") + ellipsisUCS
}

const zwj = 0x200D

// extendsPrevious reports whether r belongs to the character before it:
// combining marks, variation selectors, emoji skin-tone modifiers, the
// zero-width joiner and tag characters.
func extendsPrevious(r rune) bool {
	return unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) || unicode.Is(unicode.Mc, r) ||
		r == zwj ||
		(r >= 0xFE00 && r <= 0xFE0F) || (r >= 0xE0100 && r <= 0xE01EF) ||
		(r >= 0x1F3FB && r <= 0x1F3FF) || (r >= 0xE0020 && r <= 0xE007F)
}

func isRegionalIndicator(r rune) bool { return r >= 0x1F1E6 && r <= 0x1F1FF }

// graphemeCut moves the byte offset i back, if needed, so that s[:i] does
// not end inside a user-perceived character: not inside a UTF-8 sequence,
// not before a combining mark or modifier, not after a zero-width joiner and
// not between the two regional indicators of a flag. It approximates the
// Unicode grapheme cluster rules closely enough for truncating messages.
func graphemeCut(s string, i int) int {
	for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
		i--
	}
	for i > 0 && i < len(s) {
		next, _ := utf8.DecodeRuneInString(s[i:])
		prev, w := utf8.DecodeLastRuneInString(s[:i])
		switch {
		case extendsPrevious(next), prev == zwj:
			i -= w
		case isRegionalIndicator(next) && isRegionalIndicator(prev) && oddRegionalRun(s[:i]):
			i -= w
		default:
			return i
		}
	}
	return i
}

// oddRegionalRun reports whether s ends in an odd number of regional
// indicators, that is with the first half of a flag.
func oddRegionalRun(s string) bool {
	n := 0
	for len(s) > 0 {
		r, w := utf8.DecodeLastRuneInString(s)
		if !isRegionalIndicator(r) {
			break
		}
		n++
		s = s[:len(s)-w]
	}
	return n%2 == 1
}
