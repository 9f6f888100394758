package render

import (
	"errors"
	"fmt"
	"strings"
)

// Per-recipient values are slots in the rendered output. Prepare executes
// the templates with placeholder values "crier<nonce><slot char><probe>":
// the nonce is random per Prepare, so event text cannot contain a
// placeholder, and the probe is a string of HTML specials whose escaped form
// in the output tells in which context html/template put the value. The
// output is then split into literal text and slot references.
const (
	slotName = iota
	slotManage
	slotUnsubscribe
	slotAck
	slotBody
	slotLink

	// lastRecipientSlot is the last slot filled from a Recipient (Email);
	// the SMS fills the others.
	lastRecipientSlot = slotAck
)

const slotChars = "nmuabl"

var slotFields = [...]string{
	slotName:        ".Recipient.Name",
	slotManage:      ".Recipient.ManageURL",
	slotUnsubscribe: ".Recipient.UnsubscribeURL",
	slotAck:         ".Recipient.AckURL",
	slotBody:        ".Body",
	slotLink:        ".Link",
}

// How a slot's value is escaped where it appears.
const (
	modeRaw  = iota // text/template: as it is
	modeHTML        // HTML text or quoted attribute: escapeHTML
	modeURL         // start of a quoted URL attribute: escapeURLAttr
	numModes
)

// probe follows the slot char of every placeholder. Its escaped forms differ
// in each context html/template knows, so only the contexts whose escaping
// escapeHTML and escapeURLAttr reproduce are accepted.
const probe = `"'<&+ >`

var probeForms = [numModes]string{
	modeRaw:  probe,
	modeHTML: escapeHTML(probe),
	modeURL:  escapeURLAttr(probe),
}

func placeholder(nonce string, slot int) string {
	return nonce + slotChars[slot:slot+1] + probe
}

type ref struct {
	slot, mode uint8
}

// part is a rendered template split at its slots: lits[0] refs[0] lits[1]
// … refs[n-1] lits[n].
type part struct {
	lits   []string
	refs   []ref
	litLen int // total length of lits
}

// splitPart splits out at the placeholders built from nonce. In HTML output
// a placeholder must have been escaped for HTML text or a URL attribute, in
// text output not at all; anything else is an error naming the field.
func splitPart(out, nonce string, html bool) (part, error) {
	var p part
	for {
		i := strings.Index(out, nonce)
		if i < 0 {
			break
		}
		p.lits = append(p.lits, out[:i])
		p.litLen += i
		rest := out[i+len(nonce):]
		slot := -1
		if rest != "" {
			slot = strings.IndexByte(slotChars, rest[0])
		}
		if slot < 0 {
			return part{}, errors.New("a per-recipient value was cut or changed by the template")
		}
		rest = rest[1:]
		mode := -1
		for m := range numModes {
			if (m == modeRaw) != html && strings.HasPrefix(rest, probeForms[m]) {
				mode = m
				break
			}
		}
		if mode < 0 {
			if html {
				return part{}, fmt.Errorf("%s is used where it cannot be escaped safely: use it in HTML text, in a quoted attribute value or at the start of a quoted href", slotFields[slot])
			}
			return part{}, fmt.Errorf("%s is changed by the template: print it as it is", slotFields[slot])
		}
		p.refs = append(p.refs, ref{uint8(slot), uint8(mode)})
		out = rest[len(probeForms[mode]):]
	}
	p.lits = append(p.lits, out)
	p.litLen += len(out)
	return p, nil
}

// require reports an error if one of slots does not appear in p.
func (p *part) require(slots ...int) error {
	for _, s := range slots {
		if !p.has(s) {
			return fmt.Errorf("%w: %s", errMissingSlot, slotFields[s])
		}
	}
	return nil
}

func (p *part) has(slot int) bool {
	for _, r := range p.refs {
		if int(r.slot) == slot {
			return true
		}
	}
	return false
}

// values holds one recipient's values, on the caller's stack.
type values struct {
	raw [lastRecipientSlot + 1]string
}

func (v *values) set(rc Recipient) {
	v.raw = [...]string{slotName: oneLine(rc.Name), slotManage: oneLine(rc.ManageURL), slotUnsubscribe: oneLine(rc.UnsubscribeURL),
		slotAck: oneLine(rc.AckURL)}
}

// fill returns the part with each slot replaced by its value, escaped for
// where it stands: one allocation, of exactly the final size.
func (p *part) fill(v *values) string {
	n := p.litLen
	for _, r := range p.refs {
		if r.slot <= lastRecipientSlot {
			n += escapeTo(nil, v.raw[r.slot], r.mode)
		}
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(p.lits[0])
	for i, r := range p.refs {
		if r.slot <= lastRecipientSlot {
			escapeTo(&b, v.raw[r.slot], r.mode)
		}
		b.WriteString(p.lits[i+1])
	}
	return b.String()
}
