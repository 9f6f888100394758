package render

import (
	"strconv"
	"testing"
)

// The incident's 8th update (the postmortem) has the longest body and a
// timeline of seven earlier updates: the largest message of the seed.

func BenchmarkPrepare(b *testing.B) {
	r := newRenderer(b, Config{})
	ev := seedEvent(8)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Prepare(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// recipients returns n recipients whose links differ but have the same
// length, as tokens do.
func recipients(n int) []Recipient {
	rcs := make([]Recipient, n)
	for i := range rcs {
		tok := strconv.FormatInt(int64(100000+i), 36)
		rcs[i] = Recipient{
			Name:           "Siân Evans",
			ManageURL:      "https://status.example.com/manage/" + tok,
			UnsubscribeURL: "https://status.example.com/unsubscribe/" + tok + "?one_click=1&c=email",
		}
	}
	return rcs
}

func BenchmarkEmailPerRecipient(b *testing.B) {
	p := prepare(b, newRenderer(b, Config{}), seedEvent(8))
	rcs := recipients(1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e := p.Email(rcs[i%len(rcs)])
		if len(e.HTML) == 0 {
			b.Fatal("empty")
		}
		i++
	}
}

func BenchmarkSMSPerRecipient(b *testing.B) {
	p := prepare(b, newRenderer(b, Config{}), seedEvent(8))
	rcs := recipients(1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := p.SMS(rcs[i%len(rcs)])
		if s.Segments == 0 {
			b.Fatal("empty")
		}
		i++
	}
}

// BenchmarkSMSPerRecipientStatusURL is the case where every recipient gets
// the same text (the event has a status link): nothing to do per recipient.
func BenchmarkSMSPerRecipientStatusURL(b *testing.B) {
	ev := seedEvent(8)
	ev.StatusURL = "https://status.example.com/incidents/2025-11-10-atlas-sync"
	p := prepare(b, newRenderer(b, Config{}), ev)
	rcs := recipients(1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = p.SMS(rcs[i%len(rcs)])
		i++
	}
}

// BenchmarkSMSFit is the first recipient of an event (or one whose link has
// an unusual shape): the body is fitted from scratch.
func BenchmarkSMSFit(b *testing.B) {
	p := prepare(b, newRenderer(b, Config{}), seedEvent(8))
	link := "https://status.example.com/manage/abcdef"
	lc := costOf(link)
	b.ReportAllocs()
	for b.Loop() {
		p.sms.fit(link, lc)
	}
}

func BenchmarkSegments(b *testing.B) {
	s := oneLine(seedUpdates[7].Body)[:300]
	b.ReportAllocs()
	for b.Loop() {
		Segments(s)
	}
}
