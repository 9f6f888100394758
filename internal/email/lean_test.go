package email

import (
	"bytes"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/mail"
	"slices"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/deliver"
)

// leanSender is a Sender with what compose needs, as New sets it up.
func leanSender(t testing.TB) *Sender {
	t.Helper()
	from := &mail.Address{Name: "Atlas Status – Pod A", Address: "status@care.example"}
	return &Sender{
		cfg:       Config{ListID: "Atlas incidents <incidents.care.example>"},
		from:      from,
		fromField: from.String(),
		bounds:    newBoundaries(),
	}
}

// parsed is a message as a reader sees it: header fields decoded and
// unfolded, the multipart boundary left out, each part's header and body.
type parsed struct {
	header map[string][]string
	parts  []parsedPart
}

type parsedPart struct {
	header map[string][]string
	body   string
}

func parseComposed(t *testing.T, raw []byte) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%v:\n%s", err, raw)
	}
	var dec mime.WordDecoder
	p := parsed{header: map[string][]string{}}
	var boundary string
	for k, vs := range msg.Header {
		for _, v := range vs {
			switch k {
			case "Subject":
				d, err := dec.DecodeHeader(v)
				if err != nil {
					t.Fatalf("Subject %q: %v", v, err)
				}
				v = d
			case "Date":
				if _, err := mail.ParseDate(v); err != nil {
					t.Fatalf("Date %q: %v", v, err)
				}
				v = "(a date)"
			case "Content-Type":
				typ, params, err := mime.ParseMediaType(v)
				if err != nil {
					t.Fatalf("Content-Type %q: %v", v, err)
				}
				boundary = params["boundary"]
				delete(params, "boundary")
				v = mime.FormatMediaType(typ, params)
			}
			p.header[k] = append(p.header[k], v)
		}
	}
	body, err := io.ReadAll(msg.Body)
	if err != nil {
		t.Fatal(err)
	}
	if boundary == "" {
		p.parts = []parsedPart{{body: string(body)}}
		return p
	}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		part, err := r.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%v:\n%s", err, raw)
		}
		b, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		p.parts = append(p.parts, parsedPart{header: part.Header, body: string(b)})
	}
	return p
}

// checkLean composes m both ways and compares what a reader sees.
func checkLean(t *testing.T, s *Sender, m deliver.Message) {
	t.Helper()
	to, err := parseRecipient(m.To)
	if err != nil {
		t.Fatal(err)
	}
	var lean, gm bytes.Buffer
	used8bit, err := s.compose(&lean, m, to, "crier.7.abc@care.example", true, true)
	if err != nil || !used8bit {
		t.Fatalf("lean: 8bit %v, %v", used8bit, err)
	}
	if _, err := s.compose(&gm, m, to, "crier.7.abc@care.example", true, false); err != nil {
		t.Fatalf("go-mail: %v", err)
	}
	a, b := parseComposed(t, lean.Bytes()), parseComposed(t, gm.Bytes())
	if !maps.EqualFunc(a.header, b.header, slices.Equal) {
		t.Errorf("header fields differ:\nlean    %q\ngo-mail %q", a.header, b.header)
	}
	if len(a.parts) != len(b.parts) {
		t.Fatalf("%d parts, go-mail %d", len(a.parts), len(b.parts))
	}
	for i := range a.parts {
		if !maps.EqualFunc(a.parts[i].header, b.parts[i].header, slices.Equal) || a.parts[i].body != b.parts[i].body {
			t.Errorf("part %d differs:\nlean    %q %q\ngo-mail %q %q", i, a.parts[i].header, a.parts[i].body, b.parts[i].header, b.parts[i].body)
		}
	}
	for line := range strings.SplitSeq(lean.String(), "\n") {
		if len(line) > maxLine {
			t.Errorf("a line of %d bytes", len(line))
		}
	}
}

func TestLeanMatchesGoMail(t *testing.T) {
	s := leanSender(t)
	long := strings.Repeat("Sync Pod A is degraded: switch to Pod B ", 6)
	for _, m := range []deliver.Message{
		{To: "m1@care.example", Subject: "Atlas Sync: Sync Pod A degraded – switch pod",
			Text: "Hello\nline two ünïcode\n", HTML: "<p>Hello</p>\n", UnsubscribeURL: "https://s.example/unsubscribe/abc"},
		{To: "Jane Doe <jane@care.example>", Subject: long, Text: "only text", UnsubscribeURL: "http://s.example/u/x",
			UnsubscribeMailto: "mailto:unsub@care.example?subject=unsubscribe%20abc"},
		{To: "Zoë Ünal <z@care.example>", Subject: "Résolu : " + long, HTML: "<p>only html</p>"},
		{To: "m2@care.example", Subject: "plain", Text: "", HTML: "x\n\n--\nnot a boundary\n"},
		{To: "m3@care.example", Subject: "  spaced \t subject\r\nInjected: yes ", Text: "t", HTML: "h"},
	} {
		checkLean(t, s, m)
	}
}

func FuzzLeanMatchesGoMail(f *testing.F) {
	f.Add("Atlas Sync: Sync Pod A degraded – switch pod", "Hello\nünïcode\n", "<p>Hello</p>", "Jane", true)
	f.Add(strings.Repeat("é", 200), "", "h", "", false)
	f.Fuzz(func(t *testing.T, subject, text, html, name string, unsub bool) {
		if text == "" && html == "" {
			return
		}
		if (text != "" && !eightBitSafe(text)) || (html != "" && !eightBitSafe(html)) {
			return // not for the lean path
		}
		to := (&mail.Address{Name: name, Address: "m@care.example"}).String()
		if _, err := parseRecipient(to); err != nil || len(to) > maxWord {
			return
		}
		if !foldable(mime.QEncoding.Encode("UTF-8", cleanSubject(subject))) {
			return
		}
		m := deliver.Message{To: to, Subject: subject, Text: text, HTML: html}
		if unsub {
			m.UnsubscribeURL = "https://s.example/unsubscribe/abc"
		}
		checkLean(t, leanSender(t), m)
	})
}

// A subject with a word too long to fold within SMTP's line limit is not
// for the lean path.
func TestFoldable(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  bool
	}{
		{"", true},
		{strings.Repeat("word ", 300), true},
		{strings.Repeat("x", maxWord), true},
		{"a " + strings.Repeat("x", maxWord+1) + " b", false},
	} {
		if got := foldable(tt.value); got != tt.want {
			t.Errorf("foldable(%d bytes) = %v", len(tt.value), got)
		}
	}
}

func BenchmarkCompose(b *testing.B) {
	s := leanSender(b)
	to, _ := parseRecipient("m1@care.example")
	m := deliver.Message{To: "m1@care.example", Subject: "Atlas Sync: Sync Pod A degraded – switch pod",
		Text: strings.Repeat("Staff should switch to Sync Pod B or use paper charts.\n", 20),
		HTML: strings.Repeat("<p>Staff should switch to Sync Pod B or use paper charts.</p>\n", 40), UnsubscribeURL: "https://s.example/unsubscribe/abc"}
	for _, lean := range []bool{false, true} {
		name := "go-mail"
		if lean {
			name = "lean"
		}
		b.Run(name, func(b *testing.B) {
			var buf bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				if _, err := s.compose(&buf, m, to, "crier.1.abc@care.example", true, lean); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
