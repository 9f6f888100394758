package render

import (
	"sort"
	"strings"
	"sync/atomic"
	"unicode/utf8"
)

// smsPlan is the SMS template rendered for one event, with what is needed to
// shorten the body quickly for a given link.
type smsPlan struct {
	part
	limit int

	// The template's text without the slots.
	fixedGSM                 bool
	fixedSeptets, fixedUnits int
	nBody, nLink             int // how often each slot appears

	body                   string // one line
	bodyGSM                bool
	bodySeptets, bodyUnits int
	gsmPrefix              int     // byte length of the body's longest GSM-7 prefix
	offs                   []int32 // byte offset of each of the body's first runes, and one past
	gsmCum                 []int32 // septets of body[:offs[i]], while GSM-7
	ucsCum                 []int32 // UTF-16 units of body[:offs[i]]
	lastFit                atomic.Pointer[smsFit]
}

// smsFit is how the body was cut for a link of a given kind, cached because
// the links of one event's recipients usually have the same length.
type smsFit struct {
	key       linkKey
	cut       int    // bytes of body kept
	ellipsis  string // appended to the cut body
	truncated bool
	encoding  string
	segments  int
}

// linkKey identifies links that lead to the same fit: same length, every
// character one septet (GSM-7) or one UTF-16 unit (otherwise).
type linkKey struct {
	n   int
	gsm bool
}

type linkCost struct {
	septets, units int
	gsm, uniform   bool
}

func costOf(s string) linkCost {
	c := linkCost{gsm: true}
	runes := 0
	for _, r := range s {
		runes++
		if g := gsmSeptets(r); g == 0 {
			c.gsm = false
		} else {
			c.septets += g
		}
		c.units += utf16Units(r)
	}
	c.uniform = c.gsm && c.septets == runes || !c.gsm && c.units == runes
	return c
}

func newSMSPlan(p part, body string, limit int) *smsPlan {
	s := &smsPlan{part: p, limit: limit, body: body, fixedGSM: true}
	for _, l := range p.lits {
		c := costOf(l)
		s.fixedGSM = s.fixedGSM && c.gsm
		s.fixedSeptets += c.septets
		s.fixedUnits += c.units
	}
	for _, r := range p.refs {
		switch r.slot {
		case slotBody:
			s.nBody++
		case slotLink:
			s.nLink++
		}
	}
	// A prefix of more runes than fit in the limit is never needed: every
	// character takes at least one septet or unit.
	maxRunes := capacity(limit, gsmSingle, gsmMulti) + 1
	s.bodyGSM = true
	s.gsmPrefix = len(body)
	s.gsmCum = append(s.gsmCum, 0)
	s.ucsCum = append(s.ucsCum, 0)
	for i, r := range body {
		g := gsmSeptets(r)
		if g == 0 && s.bodyGSM {
			s.bodyGSM = false
			s.gsmPrefix = i
		}
		s.bodySeptets += g
		s.bodyUnits += utf16Units(r)
		if len(s.offs) < maxRunes {
			s.offs = append(s.offs, int32(i))
			if s.bodyGSM {
				s.gsmCum = append(s.gsmCum, int32(s.bodySeptets))
			}
			s.ucsCum = append(s.ucsCum, int32(s.bodyUnits))
		}
	}
	if len(s.offs) < maxRunes {
		s.offs = append(s.offs, int32(len(body)))
	} else {
		_, w := utf8.DecodeRuneInString(body[s.offs[len(s.offs)-1]:])
		s.offs = append(s.offs, s.offs[len(s.offs)-1]+int32(w))
	}
	return s
}

// render returns the message with link, fitted to the limit.
func (s *smsPlan) render(link string) SMS {
	lc := costOf(link)
	key := linkKey{lc.units, lc.gsm} // for a uniform link, units == septets == runes
	if lc.uniform {
		if f := s.lastFit.Load(); f != nil && f.key == key {
			return SMS{
				Body:      s.assemble(f.cut, f.ellipsis, link),
				Encoding:  f.encoding,
				Segments:  f.segments,
				Truncated: f.truncated,
			}
		}
	}
	f, msg := s.fit(link, lc)
	if lc.uniform {
		f.key = key
		s.lastFit.Store(&f)
	}
	return SMS{Body: msg, Encoding: f.encoding, Segments: f.segments, Truncated: f.truncated}
}

// fit finds the longest body prefix with which the message stays within the
// limit, and returns it with the assembled message.
func (s *smsPlan) fit(link string, lc linkCost) (smsFit, string) {
	if s.nBody == 0 || s.body == "" {
		msg := s.assemble(len(s.body), "", link)
		enc, segs := Segments(msg)
		return smsFit{cut: len(s.body), encoding: enc, segments: segs}, msg
	}
	fs := s.fixedSeptets + s.nLink*lc.septets
	fu := s.fixedUnits + s.nLink*lc.units
	gsmOK := s.fixedGSM && lc.gsm
	capG := capacity(s.limit, gsmSingle, gsmMulti)
	capU := capacity(s.limit, ucs2Single, ucs2Multi)

	// The whole body, if it fits.
	whole := fu+s.nBody*s.bodyUnits <= capU
	if gsmOK && s.bodyGSM {
		whole = fs+s.nBody*s.bodySeptets <= capG
	}
	if whole {
		msg := s.assemble(len(s.body), "", link)
		if enc, segs := Segments(msg); segs <= s.limit {
			return smsFit{cut: len(s.body), encoding: enc, segments: segs}, msg
		}
	}

	// The longest prefix plus ellipsis in each encoding, ignoring for now
	// that characters are not split across segments.
	longest := func(cum []int32, budget, ellipsis int) int {
		per := budget/s.nBody - ellipsis
		if budget < 0 || per < 0 {
			return -1
		}
		return sort.Search(len(cum), func(k int) bool { return int(cum[k]) > per }) - 1
	}
	k := -1
	if gsmOK {
		k = longest(s.gsmCum, capG-fs, len(ellipsisGSM))
	}
	k = max(k, longest(s.ucsCum, capU-fu, 1))
	cut := 0
	if k > 0 {
		cut = min(int(s.offs[k]), len(s.body)-1)
		cut = s.wordCut(cut)
	}

	// Make sure, stepping back a character at a time if segment boundaries
	// cost more than expected.
	for {
		ellipsis := ""
		if cut > 0 {
			ellipsis = ellipsisUCS
			if gsmOK && cut <= s.gsmPrefix {
				ellipsis = ellipsisGSM
			}
		}
		msg := s.assemble(cut, ellipsis, link)
		enc, segs := Segments(msg)
		if segs <= s.limit || cut == 0 {
			return smsFit{cut: cut, ellipsis: ellipsis, truncated: true, encoding: enc, segments: segs}, msg
		}
		_, w := utf8.DecodeLastRuneInString(s.body[:cut])
		cut = trimSpaceEnd(s.body, graphemeCut(s.body, cut-w))
	}
}

// wordCut moves a cut of the body back to the space before the word it
// falls in, when that space is near, then clear of any character it would
// split, and drops the spaces before it.
func (s *smsPlan) wordCut(cut int) int {
	const near = 20 // characters
	if cut < len(s.body) && s.body[cut] != ' ' {
		i := cut
		for n := 0; n < near && i > 0; n++ {
			_, w := utf8.DecodeLastRuneInString(s.body[:i])
			i -= w
			if s.body[i] == ' ' {
				if i > 0 {
					cut = i
				}
				break
			}
		}
	}
	return trimSpaceEnd(s.body, graphemeCut(s.body, cut))
}

func trimSpaceEnd(s string, i int) int {
	for i > 0 && s[i-1] == ' ' {
		i--
	}
	return i
}

// assemble writes the message with body[:cut]+ellipsis and link in their
// slots, in one allocation.
func (s *smsPlan) assemble(cut int, ellipsis, link string) string {
	var b strings.Builder
	b.Grow(s.litLen + s.nBody*(cut+len(ellipsis)) + s.nLink*len(link))
	b.WriteString(s.lits[0])
	for i, r := range s.refs {
		switch r.slot {
		case slotBody:
			b.WriteString(s.body[:cut])
			b.WriteString(ellipsis)
		case slotLink:
			b.WriteString(link)
		}
		b.WriteString(s.lits[i+1])
	}
	return b.String()
}
