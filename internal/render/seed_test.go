package render

import (
	"testing"
	"time"
)

// The updates of the Atlas Device Synchronisation incident of 10 November
// 2025 (shared/seed/incident-2025-11-10.txt), times in UTC (= GMT).

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

var seedUpdates = []Update{
	{ID: "2025-11-10-atlas-sync-0001", Status: "investigating", OccurredAt: at("2025-11-10T13:35:00Z"),
		Body: "We are aware that some users are experiencing some Atlas Device Synchronisation issues on Sync Pod A, if you are experiencing these problems please attempt to change to Sync Pod B"},
	{ID: "2025-11-10-atlas-sync-0002", Status: "update", OccurredAt: at("2025-11-10T14:14:00Z"),
		Body: "Sync issues are ongoing and currently this is affecting both Sync Pod servers intermittently, we update as soon as the cause is identified and a fix is available"},
	{ID: "2025-11-10-atlas-sync-0003", Status: "update", OccurredAt: at("2025-11-10T14:18:00Z"),
		Body: "The ongoing issue is detrimental effect on performance of the CAPA Pharmacy system, PCS will update as soon as the issue has been identified and a resolution available"},
	{ID: "2025-11-10-atlas-sync-0004", Status: "identified", OccurredAt: at("2025-11-10T14:46:00Z"),
		Body: "The issue has been identified and a fix is being implemented."},
	{ID: "2025-11-10-atlas-sync-0005", Status: "monitoring", OccurredAt: at("2025-11-10T15:38:00Z"),
		Body: "A fix has been implemented and we are monitoring the results."},
	{ID: "2025-11-10-atlas-sync-0006", Status: "update", OccurredAt: at("2025-11-10T15:38:00Z"),
		Body: "We are continuing to monitor for any further issues."},
	{ID: "2025-11-10-atlas-sync-0007", Status: "resolved", OccurredAt: at("2025-11-10T16:22:00Z"),
		Body: "This incident has been resolved."},
	{ID: "2025-11-10-atlas-sync-0008", Status: "postmortem", OccurredAt: at("2025-11-25T17:08:00Z"),
		Body: `Atlas Archive Process Incident on 10th November 2025

Summary

 On 10th November, a service disruption occurred when a scheduled maintenance task was ran during business hours. The maintenance process required the system to safely restore data integrity, which took longer than anticipated. Service was restored in stages, with initial recovery at 2:30 PM and full service restoration by 3:20 PM. 

 Root Cause

 The incident occurred due to a maintenance scheduling issue with our infrastructure partner. 

Contributing factors: 

  • Scheduling Error: A background maintenance task that is normally run outside core business hours was initiated during business hours as part of troubleshooting activities. 
  • Extended Recovery Time: The nature of the maintenance process required additional time for the system to safely complete data operations 
  • Process Documentation: Our partner's procedures did not have sufficient guidance on appropriate scheduling for this type of maintenance 

We apologise for the inconvenience this incident caused and appreciate your patience as we worked to restore service.`},
}

// seedEvent returns update n (1-based) of the incident as an Event whose
// timeline holds the updates before it, in arrival order.
func seedEvent(n int) Event {
	u := seedUpdates[n-1]
	return Event{
		ID:         u.ID,
		IncidentID: "2025-11-10-atlas-sync",
		Kind:       "incident",
		Status:     u.Status,
		Impact:     "major",
		Title:      "Atlas Device Synchronisation Issues",
		Body:       u.Body,
		Components: []string{"Atlas Sync", "Sync Pod A", "Sync Pod B", "CAPA"},
		OccurredAt: u.OccurredAt,
		Timeline:   append([]Update(nil), seedUpdates[:n-1]...),
	}
}

func maintenanceEvent() Event {
	from, until := at("2025-11-16T22:00:00Z"), at("2025-11-17T01:00:00Z")
	return Event{
		ID:             "2025-11-12-atlas-archive-0001",
		IncidentID:     "2025-11-12-atlas-archive",
		Kind:           "maintenance",
		Status:         "scheduled",
		Impact:         "minor",
		Title:          "Atlas Sync archive process",
		Body:           "Our infrastructure partner will run the Atlas archive process outside business hours.\nDevices may not sync during this window; records entered on devices will sync once the work is complete.\n\nNo action is needed.",
		Components:     []string{"Atlas Sync", "Sync Pod A", "Sync Pod B"},
		OccurredAt:     at("2025-11-12T09:00:00Z"),
		ScheduledFor:   &from,
		ScheduledUntil: &until,
		StatusURL:      "https://status.example.com/incidents/2025-11-12-atlas-archive",
	}
}

var seedRecipient = Recipient{
	Name:           "Siân Evans",
	ManageURL:      "https://status.example.com/manage/tok_3f9aQk",
	UnsubscribeURL: "https://status.example.com/unsubscribe/tok_3f9aQk?one_click=1&c=email",
}

func newRenderer(t testing.TB, cfg Config) *Renderer {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func prepare(t testing.TB, r *Renderer, ev Event) *Prepared {
	t.Helper()
	p, err := r.Prepare(ev)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return p
}
