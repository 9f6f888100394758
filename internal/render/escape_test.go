package render

import (
	htmltemplate "html/template"
	"strings"
	"testing"
)

// htmlTemplateEscapes returns what html/template makes of s in HTML text, in
// a quoted attribute, and at the start of a quoted href.
func htmlTemplateEscapes(t testing.TB, s string) (text, attr, href string) {
	t.Helper()
	tmpl := htmltemplate.Must(htmltemplate.New("").Parse(`{{.}}|<a title="{{.}}">|<a href="{{.}}">`))
	var b strings.Builder
	if err := tmpl.Execute(&b, s); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	text, rest, _ := strings.Cut(out, `|<a title="`)
	attr, rest, _ = strings.Cut(rest, `">|<a href="`)
	href = strings.TrimSuffix(rest, `">`)
	return text, attr, href
}

var escapeSeeds = []string{
	"", "plain", `<script>alert("x")</script>`, "O'Neil & Sons + Co", "a\x00b",
	"https://status.example.com/u/tok?a=1&b=2", "javascript:alert(1)", "JavaScript:x", "mailto:a@b.example",
	"data:text/html,x", "/relative/path?q=a b", "https://x.example/%zz%41", "https://x.example/é?ł=😀",
	"https://x.example/(paren)'quote'\"dq\"`tick`{br}|pipe\\back^caret", "bad\xffutf8",
	"ftp://x/y", "no/colon:later", "#frag", "?q=1", "%", "%4", "%41",
}

func TestEscapersMatchHTMLTemplate(t *testing.T) {
	t.Parallel()
	for _, s := range escapeSeeds {
		text, attr, href := htmlTemplateEscapes(t, s)
		if got := escapeHTML(s); got != text || got != attr {
			t.Errorf("escapeHTML(%q) = %q; html/template: text %q, attribute %q", s, got, text, attr)
		}
		if got := escapeURLAttr(s); got != href {
			t.Errorf("escapeURLAttr(%q) = %q; html/template: %q", s, got, href)
		}
	}
}

func FuzzEscapers(f *testing.F) {
	for _, s := range escapeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		text, attr, href := htmlTemplateEscapes(t, s)
		if got := escapeHTML(s); got != text || got != attr {
			t.Errorf("escapeHTML(%q) = %q; html/template: text %q, attribute %q", s, got, text, attr)
		}
		if got := escapeURLAttr(s); got != href {
			t.Errorf("escapeURLAttr(%q) = %q; html/template: %q", s, got, href)
		}
	})
}

func TestOneLine(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                  "",
		"plain":             "plain",
		" lead":             "lead",
		"trail ":            "trail",
		"a  b":              "a b",
		"a\r\nb":            "a b",
		"a\tb\x00c":         "a b c",
		"a\u00a0\u2028b":    "a b",
		"é ł 😀":             "é ł 😀",
		"bad\xff":           "bad\uFFFD",
		"\x7fdel":           "del",
		"c1\u0085nel\u009b": "c1 nel",
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
		if isOneLine(in) != (in == want) {
			t.Errorf("isOneLine(%q) = %t", in, isOneLine(in))
		}
	}
}

func TestGraphemeCut(t *testing.T) {
	t.Parallel()
	s := "ab🇬🇧🇵🇱x👨‍👩‍👧ye\u0301z👍🏽"
	for i := 0; i <= len(s); i++ {
		c := graphemeCut(s, i)
		if c > i {
			t.Fatalf("graphemeCut(%d) = %d moves forward", i, c)
		}
		// Every allowed cut is one of the cluster boundaries.
		switch s[:c] {
		case "", "a", "ab", "ab🇬🇧", "ab🇬🇧🇵🇱", "ab🇬🇧🇵🇱x", "ab🇬🇧🇵🇱x👨‍👩‍👧", "ab🇬🇧🇵🇱x👨‍👩‍👧y",
			"ab🇬🇧🇵🇱x👨‍👩‍👧ye\u0301", "ab🇬🇧🇵🇱x👨‍👩‍👧ye\u0301z", s:
		default:
			t.Errorf("graphemeCut(%d) = %d splits a character: %q", i, c, s[:c])
		}
	}
}
