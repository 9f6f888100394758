package render_test

import (
	"fmt"
	"log"
	"time"

	"github.com/crier-dev/crier/internal/render"
)

// Prepare once per event, then personalise per recipient.
func ExampleRenderer_Prepare() {
	r, err := render.New(render.Config{}) // embedded templates, Europe/London, 2 SMS segments
	if err != nil {
		log.Fatal(err)
	}
	p, err := r.Prepare(render.Event{
		ID:         "2025-11-10-atlas-sync-0001",
		IncidentID: "2025-11-10-atlas-sync",
		Kind:       "incident",
		Status:     "investigating",
		Impact:     "major",
		Title:      "Atlas Device Synchronisation Issues",
		Body:       "Some users are experiencing sync issues on Sync Pod A; please change to Sync Pod B.",
		Components: []string{"Sync Pod A"},
		OccurredAt: time.Date(2025, 11, 10, 13, 35, 0, 0, time.UTC),
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, rc := range []render.Recipient{{
		Name:           "Siân Evans",
		ManageURL:      "https://status.example.com/manage/tok1",
		UnsubscribeURL: "https://status.example.com/unsubscribe/tok1",
	}} {
		email := p.Email(rc)
		sms := p.SMS(rc)
		fmt.Println(email.Subject)
		fmt.Printf("%s, %d segment(s):\n%s\n", sms.Encoding, sms.Segments, sms.Body)
	}
	// Output:
	// [Investigating] Atlas Device Synchronisation Issues
	// GSM-7, 2 segment(s):
	// Investigating: Atlas Device Synchronisation Issues
	// Some users are experiencing sync issues on Sync Pod A; please change to Sync Pod B.
	// https://status.example.com/manage/tok1
	// Reply STOP to stop texts.
}

func ExampleSegments() {
	for _, s := range []string{"Sync Pod A is down", "Cost: €5", "Tŷ Gwyn: sync down 😀"} {
		enc, n := render.Segments(s)
		fmt.Println(enc, n)
	}
	// Output:
	// GSM-7 1
	// GSM-7 1
	// UCS-2 1
}
