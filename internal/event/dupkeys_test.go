package event

import "testing"

func TestDuplicateKey(t *testing.T) {
	for raw, want := range map[string]string{
		`{"a":1,"b":2}`: "",
		`{"a":1,"a":2}`: "a",
		`{"a":{"x":1,"y":2},"b":{"x":1,"x":"2"}}`: "b.x",
		`{"a":[{"k":1},{"k":2}],"b":"a"}`:         "",
		`{"a":[{"k":1,"k":2}]}`:                   "a.k",
		`{"a":"b","b":"a","a":"c"}`:               "a",
		`{"a":{"b":{}},"c":{"b":{}}}`:             "",
		`[{"a":1},{"a":1}]`:                       "",
		`{"a":1`:                                  "",
	} {
		got, found := DuplicateKey([]byte(raw))
		if got != want || found != (want != "") {
			t.Errorf("DuplicateKey(%s) = %q, %v; want %q", raw, got, found, want)
		}
	}
}
