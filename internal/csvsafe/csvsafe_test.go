package csvsafe_test

import (
	"bytes"
	"encoding/csv"
	"testing"

	"github.com/crier-dev/crier/internal/csvsafe"
)

func TestNeutralise(t *testing.T) {
	for in, want := range map[string]string{
		`=cmd|' /C calc'!A0`:             `'=cmd|' /C calc'!A0`,
		`=HYPERLINK("https://evil","x")`: `'=HYPERLINK("https://evil","x")`,
		`@SUM(1+1)*cmd|' /C calc'!A0`:    `'@SUM(1+1)*cmd|' /C calc'!A0`,
		`+1+cmd`:                         `'+1+cmd`,
		`-2+3`:                           `'-2+3`,
		"\t=1":                           "'\t=1",
		"\r=1":                           "'\r=1",
		`'=already quoted`:               `''=already quoted`,
		`Sunnyside Care`:                 `Sunnyside Care`,
		`O'Brien`:                        `O'Brien`,
		`'tis`:                           `'tis`,
		`+447400123456`:                  `+447400123456`,
		`+44 7400 123456`:                `'+44 7400 123456`,
		``:                               ``,
		`a=b`:                            `a=b`,
	} {
		got := csvsafe.Neutralise(in)
		if got != want {
			t.Errorf("Neutralise(%q) = %q, want %q", in, got, want)
		}
		if back := csvsafe.Restore(got); back != in {
			t.Errorf("Restore(Neutralise(%q)) = %q", in, back)
		}
	}
}

// TestWriterRoundTrip: every cell written reads back, after Restore, as
// it was, and no written cell starts with a formula character.
func TestWriterRoundTrip(t *testing.T) {
	rows := [][]string{
		{"email", "name"},
		{"=1+1@example.org", `=HYPERLINK("x")`},
		{"jo@example.org", "Jo, \"the manager\"\nline two"},
	}
	var b bytes.Buffer
	w := csvsafe.NewWriter(&b)
	for _, r := range rows {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		for j, c := range r {
			if c != "" && bytes.ContainsAny([]byte{c[0]}, "=+-@\t\r") {
				t.Errorf("cell %d,%d written as %q", i, j, c)
			}
			if csvsafe.Restore(c) != rows[i][j] {
				t.Errorf("cell %d,%d: %q back as %q", i, j, rows[i][j], csvsafe.Restore(c))
			}
		}
	}
}
