package render

import "strings"

// The escapers below reproduce, byte for byte, what html/template does to a
// string in the two HTML contexts where per-recipient values may appear (the
// tests compare them with html/template). Prepare renders the templates once
// with marker values and records in which context each marker landed; the
// per-recipient step then escapes the real value the same way.

// htmlEscapes is html/template's htmlReplacementTable: the escaping of a
// string in HTML text, in a quoted attribute and in RCDATA (<title>).
var htmlEscapes = [...]string{
	0:    "\uFFFD",
	'"':  "&#34;",
	'&':  "&amp;",
	'\'': "&#39;",
	'+':  "&#43;",
	'<':  "&lt;",
	'>':  "&gt;",
}

// filterFailsafe is what html/template puts in place of a URL with an
// unsafe scheme (javascript:, data:, …).
const filterFailsafe = "#ZgotmplZ"

// isSafeURL is html/template's test: relative, or http, https or mailto.
func isSafeURL(s string) bool {
	if protocol, _, ok := strings.Cut(s, ":"); ok && !strings.Contains(protocol, "/") {
		return strings.EqualFold(protocol, "http") || strings.EqualFold(protocol, "https") ||
			strings.EqualFold(protocol, "mailto")
	}
	return true
}

// urlKeeps reports whether html/template's URL normaliser keeps byte i of s
// as it is ('%' is kept when it starts a valid escape).
func urlKeeps(s string, i int) bool {
	c := s[i]
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '&', '*', '+', ',', '/', ':', ';', '=', '?', '@', '[', ']', '-', '.', '_', '~':
		return true
	case '%':
		return i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2])
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// escapeHTML escapes s for HTML text or a quoted attribute value. It returns
// s itself, without allocating, when nothing needs escaping.
func escapeHTML(s string) string { return escape(s, modeHTML) }

// escapeURLAttr escapes s as html/template does for a URL at the start of a
// quoted URL attribute such as href: an unsafe scheme becomes "#ZgotmplZ",
// bytes outside the URL alphabet are percent-encoded, and '&' and '+' are
// then HTML-escaped. It returns s itself when nothing changes.
func escapeURLAttr(s string) string { return escape(s, modeURL) }

func escape(s string, mode uint8) string {
	if mode == modeURL && !isSafeURL(s) {
		return filterFailsafe
	}
	n := escapeTo(nil, s, mode)
	if n == len(s) { // escaping only ever lengthens
		return s
	}
	var b strings.Builder
	b.Grow(n)
	escapeTo(&b, s, mode)
	return b.String()
}

// escapeTo writes s to b escaped for mode (modeRaw, modeHTML or modeURL)
// and returns the length of the result. With b nil it only measures, so
// that a caller can size its buffer first and allocate once.
func escapeTo(b *strings.Builder, s string, mode uint8) int {
	switch mode {
	case modeRaw:
		if b != nil {
			b.WriteString(s)
		}
		return len(s)
	case modeURL:
		if !isSafeURL(s) {
			s = filterFailsafe
		}
	}
	const hex = "0123456789abcdef"
	n, written := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var repl string
		switch {
		case int(c) < len(htmlEscapes) && htmlEscapes[c] != "" && (mode == modeHTML || c == '&' || c == '+'):
			// In a URL, '"', '\'', '<', '>' and NUL are percent-encoded
			// below; '&' and '+' are kept by the normaliser and then
			// HTML-escaped for the attribute.
			repl = htmlEscapes[c]
		case mode == modeURL && !urlKeeps(s, i):
			n += 3
			if b != nil {
				b.WriteString(s[written:i])
				b.WriteByte('%')
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
				written = i + 1
			}
			continue
		default:
			n++
			continue
		}
		n += len(repl)
		if b != nil {
			b.WriteString(s[written:i])
			b.WriteString(repl)
			written = i + 1
		}
	}
	if b != nil {
		b.WriteString(s[written:])
	}
	return n
}
