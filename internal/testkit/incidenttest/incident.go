// Package incidenttest holds the incident of 10 November 2025 (Atlas Device
// Synchronisation Issues, from shared/seed) as events, for tests.
package incidenttest

import (
	"time"

	"github.com/crier-dev/crier/internal/event"
)

// IncidentID is the id all updates share.
const IncidentID = "2025-11-10-atlas-sync"

const title = "Atlas Device Synchronisation Issues"

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// Updates returns the incident's updates in the order they were posted.
// The Monitoring and the following Update share 15:38.
func Updates() []event.Event {
	u := func(n, status, impact, when, body string, components ...string) event.Event {
		return event.Event{
			ID: IncidentID + "-000" + n, IncidentID: IncidentID, Kind: event.KindIncident,
			Status: status, Impact: impact, Title: title, Body: body,
			Components: components, OccurredAt: at(when), Notify: true,
		}
	}
	return []event.Event{
		u("1", "investigating", "major", "2025-11-10T13:35:00Z",
			"We are aware that some users are experiencing some Atlas Device Synchronisation issues on Sync Pod A, if you are experiencing these problems please attempt to change to Sync Pod B",
			"atlas-sync/sync-pod-a"),
		u("2", "update", "major", "2025-11-10T14:14:00Z",
			"Sync issues are ongoing and currently this is affecting both Sync Pod servers intermittently, we update as soon as the cause is identified and a fix is available",
			"atlas-sync/sync-pod-a", "atlas-sync/sync-pod-b"),
		u("3", "update", "major", "2025-11-10T14:18:00Z",
			"The ongoing issue is detrimental effect on performance of the CAPA Pharmacy system, PCS will update as soon as the issue has been identified and a resolution available",
			"emar", "capa"),
		u("4", "identified", "major", "2025-11-10T14:46:00Z",
			"The issue has been identified and a fix is being implemented.", "atlas-sync"),
		u("5", "monitoring", "minor", "2025-11-10T15:38:00Z",
			"A fix has been implemented and we are monitoring the results.", "atlas-sync"),
		u("6", "update", "minor", "2025-11-10T15:38:00Z",
			"We are continuing to monitor for any further issues.", "atlas-sync"),
		u("7", "resolved", "none", "2025-11-10T16:22:00Z",
			"This incident has been resolved.", "atlas-sync"),
		u("8", "postmortem", "none", "2025-11-25T17:08:00Z",
			"On 10th November, a service disruption occurred when a scheduled maintenance task was ran during business hours. Service was restored in stages, with initial recovery at 2:30 PM and full service restoration by 3:20 PM.",
			"emar", "capa", "atlas-sync"),
	}
}

// Raw returns the wire form of ev, panicking on error (test data only).
func Raw(ev event.Event) []byte {
	b, err := event.Encode(ev)
	if err != nil {
		panic(err)
	}
	return b
}
