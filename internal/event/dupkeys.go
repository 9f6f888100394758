package event

import (
	"bytes"
	"encoding/json"
	"strings"
)

// DuplicateKey reports the first key that appears twice in one JSON object
// of raw, as a dotted path ("components" or "labels.team"). encoding/json
// keeps the last of repeated keys silently, so that two systems reading one
// payload could each see a different event; crier refuses such payloads. A
// payload that is not well-formed JSON has no duplicate by this test
// (decoding reports it).
func DuplicateKey(raw []byte) (path string, found bool) {
	type frame struct {
		object  bool
		wantKey bool // in an object: the next string is a key
		key     string
		keys    map[string]bool
	}
	var stack []*frame
	parentTakes := func() { // a value of the enclosing object is complete
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		top := (*frame)(nil)
		if n := len(stack); n > 0 {
			top = stack[n-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.object {
					top.wantKey = false
				}
				stack = append(stack, &frame{object: t == '{', wantKey: t == '{', keys: map[string]bool{}})
			default:
				stack = stack[:len(stack)-1]
				parentTakes()
			}
		case string:
			if top != nil && top.object && top.wantKey {
				if top.keys[t] {
					var names []string
					for _, f := range stack {
						if f.object && f != top {
							names = append(names, f.key)
						}
					}
					return strings.Join(append(names, t), "."), true
				}
				top.keys[t], top.key, top.wantKey = true, t, false
				continue
			}
			parentTakes()
		default:
			parentTakes()
		}
		if len(stack) == 0 && !dec.More() {
			return "", false
		}
	}
}
