package render

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSegments(t *testing.T) {
	t.Parallel()
	a := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		name, s  string
		encoding string
		segments int
	}{
		{"empty", "", EncodingGSM7, 0},
		{"plain", "Sync Pod A is down", EncodingGSM7, 1},
		{"GSM-7 specials", "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà", EncodingGSM7, 1},
		{"160 septets", a(160), EncodingGSM7, 1},
		{"161 septets", a(161), EncodingGSM7, 2},
		{"306 septets", a(306), EncodingGSM7, 2},
		{"307 septets", a(307), EncodingGSM7, 3},
		{"euro counts 2", strings.Repeat("€", 80), EncodingGSM7, 1},
		{"81 euros", strings.Repeat("€", 81), EncodingGSM7, 2},
		{"bracket pushes over 160", "[" + a(159), EncodingGSM7, 2},
		{"all extended", "€[]{}\\~^|\f", EncodingGSM7, 1},
		{"escape not split across segments", a(152) + "€" + a(152), EncodingGSM7, 3},
		{"backtick is not GSM-7", "`", EncodingUCS2, 1},
		{"emoji", "Sync down 😀", EncodingUCS2, 1},
		{"35 emoji = 70 units", strings.Repeat("😀", 35), EncodingUCS2, 1},
		{"36 emoji", strings.Repeat("😀", 36), EncodingUCS2, 2},
		{"surrogate pair not split", a(66) + "😀" + a(66), EncodingUCS2, 3},
		{"70 units", a(69) + "ł", EncodingUCS2, 1},
		{"71 units", a(70) + "ł", EncodingUCS2, 2},
		{"134 units", a(133) + "ł", EncodingUCS2, 2},
		{"135 units", a(134) + "ł", EncodingUCS2, 3},
		{"Welsh", "Cartref Tŷ Gwyn, Llanfair: gwasanaeth ŵyr", EncodingUCS2, 1},
		{"Polish", "Dom Opieki Łódź, ul. Żółkiewskiego", EncodingUCS2, 1},
		{"ç is not GSM-7 (Ç is)", "Çava ça", EncodingUCS2, 1},
		{"invalid UTF-8", "a\xffb", EncodingUCS2, 1},
		{"BMP symbol", "…", EncodingUCS2, 1},
	}
	for _, c := range cases {
		enc, n := Segments(c.s)
		if enc != c.encoding || n != c.segments {
			t.Errorf("%s: Segments = %s, %d; want %s, %d", c.name, enc, n, c.encoding, c.segments)
		}
	}
}

// checkSMS checks the invariants of every text message and returns the part
// of the body that stands for the event body (between the first line break
// and the link).
func checkSMS(t *testing.T, s SMS, link string, limit int, achievable bool) {
	t.Helper()
	if !utf8.ValidString(s.Body) {
		t.Fatalf("invalid UTF-8: %q", s.Body)
	}
	if enc, n := Segments(s.Body); enc != s.Encoding || n != s.Segments {
		t.Errorf("SMS says %s/%d, Segments says %s/%d", s.Encoding, s.Segments, enc, n)
	}
	if achievable && s.Segments > limit {
		t.Errorf("%d segments, limit %d: %q", s.Segments, limit, s.Body)
	}
	if link != "" && !strings.Contains(s.Body, link) {
		t.Errorf("link %q missing: %q", link, s.Body)
	}
	if !strings.HasSuffix(s.Body, "Reply STOP to stop texts.") {
		t.Errorf("no STOP footer: %q", s.Body)
	}
}

func TestSMSTruncation(t *testing.T) {
	t.Parallel()
	renderers := map[int]*Renderer{}
	for _, n := range []int{1, 2, 3} {
		renderers[n] = newRenderer(t, Config{SMSMaxSegments: n})
	}
	long := seedUpdates[7].Body
	cases := []struct {
		name, title, body, link string
		encoding                string // expected, for limit 2
	}{
		{"GSM-7 long", "Atlas Device Synchronisation Issues", long, "https://s.example/m/abc", EncodingGSM7},
		{"extended GSM-7", "Prices in € [draft]", strings.Repeat("{€} [cost] ~ ^ | \\ ", 40), "https://s.example/m/abc", EncodingGSM7},
		{"emoji body", "Sync down", strings.Repeat("Pods 😀 down 👍🏽 again ", 30), "https://s.example/m/abc", EncodingUCS2},
		{"emoji late in body", "Sync down", strings.Repeat("word ", 80) + "😀 end", "https://s.example/m/abc", EncodingGSM7},
		{"emoji early in body", "Sync down", "😀 " + strings.Repeat("word ", 80), "https://s.example/m/abc", EncodingUCS2},
		{"Welsh title", "Cartref Tŷ Gwyn: ŵyr", long, "https://s.example/m/abc", EncodingUCS2},
		{"Polish body", "Atlas Sync", strings.Repeat("Dom Opieki Łódź, ul. Żółkiewskiego; ", 20), "https://s.example/m/abc", EncodingUCS2},
		{"flags and families", "Sync", strings.Repeat("🇬🇧🇵🇱👨‍👩‍👧 ", 60), "https://s.example/m/abc", EncodingUCS2},
		{"no spaces", "Sync", strings.Repeat("ł", 400), "https://s.example/m/abc", EncodingUCS2},
		{"combining marks", "Sync", strings.Repeat("e\u0301", 400), "https://s.example/m/abc", EncodingUCS2},
		{"link with tilde", "Sync", long, "https://s.example/~m/abc", EncodingGSM7},
		{"non-GSM link", "Sync", long, "https://s.example/m/łódź", EncodingUCS2},
	}
	for _, c := range cases {
		for limit, r := range renderers {
			t.Run(fmt.Sprintf("%s/%d", c.name, limit), func(t *testing.T) {
				ev := Event{Kind: "incident", Status: "investigating", Title: c.title, Body: c.body}
				rc := Recipient{ManageURL: c.link}
				s := prepare(t, r, ev).SMS(rc)
				ev.Body = ""
				achievable := prepare(t, r, ev).SMS(rc).Segments <= limit
				checkSMS(t, s, c.link, limit, achievable)
				if !s.Truncated {
					t.Fatalf("not truncated: %q", s.Body)
				}
				if limit == 2 && s.Encoding != c.encoding {
					t.Errorf("encoding %s, want %s", s.Encoding, c.encoding)
				}
				// The second line holds the cut body and the ellipsis, or
				// nothing when no part of the body fits.
				lines := strings.Split(s.Body, "\n")
				if lines[1] == "" {
					if limit > 1 {
						t.Errorf("nothing of the body kept in %d segments: %q", limit, s.Body)
					}
					return
				}
				if s.Segments != limit {
					t.Errorf("%d segments of %d used: %q", s.Segments, limit, s.Body)
				}
				ell := ellipsisGSM
				if s.Encoding == EncodingUCS2 {
					ell = ellipsisUCS
				}
				kept, ok := strings.CutSuffix(lines[1], ell)
				if !ok || kept == "" {
					t.Fatalf("body line %q does not end in %q after some text", lines[1], ell)
				}
				full := oneLine(c.body)
				if !strings.HasPrefix(full, kept) || limit > 1 && len(kept) < 20 {
					t.Fatalf("body line %q is not a long enough prefix of the body", kept)
				}
				last, _ := utf8.DecodeLastRuneInString(kept)
				next, _ := utf8.DecodeRuneInString(full[len(kept):])
				if last == zwj || extendsPrevious(next) || oddRegionalRun(kept) || last == ' ' {
					t.Errorf("cut splits a character: ...%q | %q...", kept[max(0, len(kept)-12):], full[len(kept):][:8])
				}
			})
		}
	}
}

func TestSMSShortBodyNotTruncated(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{})
	for body, want := range map[string]SMS{
		"Fixed.":             {Encoding: EncodingGSM7, Segments: 1},
		"Cost €5 [approx]":   {Encoding: EncodingGSM7, Segments: 1},
		"Naprawione: Łódź 😀": {Encoding: EncodingUCS2, Segments: 2}, // 89 UTF-16 units
	} {
		s := prepare(t, r, Event{Status: "resolved", Title: "Atlas Sync", Body: body}).SMS(Recipient{ManageURL: "https://s.example/m/1"})
		checkSMS(t, s, "https://s.example/m/1", 2, true)
		if s.Truncated || s.Body != "Resolved: Atlas Sync\n"+body+"\nhttps://s.example/m/1\nReply STOP to stop texts." ||
			s.Encoding != want.Encoding || s.Segments != want.Segments {
			t.Errorf("body %q: %+v", body, s)
		}
	}
	// No body at all.
	s := prepare(t, r, Event{Status: "resolved", Title: "Atlas Sync"}).SMS(Recipient{ManageURL: "https://s.example/m/1"})
	if s.Body != "Resolved: Atlas Sync\n\nhttps://s.example/m/1\nReply STOP to stop texts." {
		t.Errorf("no body: %q", s.Body)
	}
}

// When even an empty body does not fit, the message is still sent whole,
// with no body, over the limit.
func TestSMSUnachievableLimit(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{SMSMaxSegments: 1})
	ev := Event{Status: "investigating", Title: strings.Repeat("Very long title ", 12), Body: "Body text."}
	s := prepare(t, r, ev).SMS(Recipient{ManageURL: "https://s.example/m/1"})
	checkSMS(t, s, "https://s.example/m/1", 1, false)
	if s.Segments <= 1 || !s.Truncated || strings.Contains(s.Body, "Body") || strings.Contains(s.Body, "...") {
		t.Errorf("%+v", s)
	}
}

// The per-event cache of how the body was cut gives the result a fresh fit
// gives, for links of the same shape and of others.
func TestSMSFitCache(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{})
	p := prepare(t, r, seedEvent(8))
	for _, link := range []string{
		"https://s.example/m/aaaaaa", "https://s.example/m/bbbbbb", "https://s.example/m/€€€",
		"https://s.example/m/łłłłłł", "https://s.example/m/cccccc", "https://s.example/m/łłłłłł",
		"https://s.example/m/ccc~cc", "https://s.example/m/" + strings.Repeat("x", 200),
	} {
		got := p.SMS(Recipient{ManageURL: link})
		f, msg := p.sms.fit(link, costOf(link))
		want := SMS{Body: msg, Encoding: f.encoding, Segments: f.segments, Truncated: f.truncated}
		if got != want {
			t.Errorf("link %s: cached %+v, fresh %+v", link, got, want)
		}
		checkSMS(t, got, link, 2, true)
	}
}

func TestSMSStatusURL(t *testing.T) {
	t.Parallel()
	r := newRenderer(t, Config{})
	ev := seedEvent(1)
	ev.StatusURL = "https://status.example.com/incidents/2025-11-10-atlas-sync"
	p := prepare(t, r, ev)
	a, b := p.SMS(seedRecipient), p.SMS(Recipient{ManageURL: "https://other.example/m"})
	if a != b || !strings.Contains(a.Body, ev.StatusURL) || strings.Contains(a.Body, "manage") {
		t.Errorf("with a status link every recipient gets the same message with it: %q / %q", a.Body, b.Body)
	}
}

func FuzzSMS(f *testing.F) {
	f.Add("Atlas Device Synchronisation Issues", seedUpdates[0].Body, "https://status.example.com/m/tok", uint8(2))
	f.Add("Sync", seedUpdates[7].Body, "https://s.example/m/1", uint8(1))
	f.Add("Tŷ Gwyn", strings.Repeat("😀👨‍👩‍👧🇬🇧 ", 50), "https://s.example/~m", uint8(3))
	f.Add("Łódź", strings.Repeat("Żółkiewskiego ", 30), "https://s.example/m/ł", uint8(2))
	f.Add("€ [x]", strings.Repeat("{€}", 200), "", uint8(1))
	f.Add(strings.Repeat("long title ", 30), "body", "https://s.example/m", uint8(1))
	f.Add("bad \xff\xfe", "a\xed\xa0\x80b\r\n\x00c", "https://s.example/\xff", uint8(4))
	f.Add("", "", "", uint8(0))
	var renderers [4]*Renderer // limits 1 to 4
	for i := range renderers {
		renderers[i] = newRenderer(f, Config{SMSMaxSegments: i + 1})
	}
	f.Fuzz(func(t *testing.T, title, body, link string, limit uint8) {
		n := int(limit%4) + 1
		r := renderers[n-1]
		rc := Recipient{ManageURL: link}
		ev := Event{Kind: "incident", Status: "update", Title: title, Body: body}
		p, err := r.Prepare(ev)
		if err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		s := p.SMS(rc)
		ev.Body = ""
		empty := prepare(t, r, ev).SMS(rc)
		checkSMS(t, s, oneLine(link), n, empty.Segments <= n)
		if strings.Contains(s.Body, "\uFFFD") && !strings.Contains(title+body+link, "\uFFFD") && utf8.ValidString(title+body+link) {
			t.Errorf("replacement character from valid input: %q", s.Body)
		}
		if !s.Truncated && oneLine(body) != "" && !strings.Contains(s.Body, oneLine(body)) {
			t.Errorf("untruncated message lacks the body: %q", s.Body)
		}
	})
}

// Escape sequences and surrogate pairs are not split across segments, which
// can cost a septet or unit per boundary that a simple count misses: the
// result must still fit, whatever the alignment.
func TestSMSSegmentBoundaries(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{2, 3, 4} {
		r := newRenderer(t, Config{SMSMaxSegments: limit})
		for _, body := range []string{strings.Repeat("€", 500), strings.Repeat("😀", 500), strings.Repeat("a€", 300)} {
			for pad := range 8 {
				ev := Event{Status: "update", Title: "Sync" + strings.Repeat("x", pad), Body: body}
				s := prepare(t, r, ev).SMS(Recipient{ManageURL: "https://s.example/m/1"})
				checkSMS(t, s, "https://s.example/m/1", limit, true)
				if !s.Truncated || s.Segments != limit {
					t.Errorf("limit %d, pad %d: %+v", limit, pad, s)
				}
			}
		}
	}
}
