package render

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n--- got ---\n%s\n--- want ---\n%s",
			name, path, got, want)
	}
}

func TestGolden(t *testing.T) {
	r := newRenderer(t, Config{})
	cases := []struct {
		name string
		ev   Event
		rc   Recipient
	}{
		{"incident-investigating", seedEvent(1), seedRecipient},
		{"incident-update-1418", seedEvent(3), seedRecipient},
		{"incident-postmortem", seedEvent(8), Recipient{ManageURL: seedRecipient.ManageURL, UnsubscribeURL: seedRecipient.UnsubscribeURL}},
		{"maintenance-scheduled", maintenanceEvent(), seedRecipient},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := prepare(t, r, c.ev)
			e := p.Email(c.rc)
			golden(t, c.name+".email.txt", "Subject: "+e.Subject+"\n\n"+e.Text)
			golden(t, c.name+".email.html", e.HTML)
			s := p.SMS(c.rc)
			golden(t, c.name+".sms", fmt.Sprintf("encoding: %s\nsegments: %d\ntruncated: %t\n\n%s\n",
				s.Encoding, s.Segments, s.Truncated, s.Body))
		})
	}
}
