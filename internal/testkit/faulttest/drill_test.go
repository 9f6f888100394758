package faulttest

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDrills: POST /v1/drills and crier drill reach every primary contact
// on the components with a marked test asking for acknowledgement; a
// drill escalates only when asked to.
func TestDrills(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	p := w.start("crier", map[string]string{"CRIER_ESCALATE_AFTER": "major=2s"})
	auth := http.Header{"Authorization": {"Bearer " + apiToken}}
	post := func(path, body string) (int, string) {
		return p.do(http.MethodPost, path, "application/json", strings.NewReader(body), auth)
	}
	for _, s := range []string{
		`{"email": "manager@oakview.example", "components": ["emar"], "organisation": "Oakview", "confirmed": true}`,
		`{"email": "owner@oakview.example", "components": ["emar"], "organisation": "oakview", "role": "escalation", "confirmed": true}`,
		`{"email": "pharmacist@capa.example", "components": ["capa"], "confirmed": true}`,
	} {
		if code, out := post("/v1/subscribers", s); code != http.StatusCreated {
			t.Fatalf("create subscriber: %d %s", code, out)
		}
	}
	told := func(addr, kind string) int {
		return w.count(`SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_id
			WHERE d.address = $1 AND e.kind = $2 AND d.state IN ('sent', 'delivered')`, addr, kind)
	}

	code, out := post("/v1/drills", `{"components": ["emar"], "title": "Quarterly alerting drill"}`)
	var ans struct{ ID string }
	if err := json.Unmarshal([]byte(out), &ans); code != http.StatusAccepted || err != nil || !strings.HasPrefix(ans.ID, "drill-") {
		t.Fatalf("POST /v1/drills: %d %s", code, out)
	}
	waitFor(t, "the drill reaches the eMar home", 20*time.Second, func() bool { return told("manager@oakview.example", "drill") == 1 })
	if n := told("pharmacist@capa.example", "drill"); n != 0 {
		t.Errorf("a CAPA subscriber got the eMar drill")
	}
	if n := w.count(`SELECT count(*) FROM escalations WHERE incident_id = $1`, ans.ID); n != 0 {
		t.Errorf("a drill without escalate scheduled %d escalations", n)
	}
	if code, _ := post("/v1/drills", `{"components": ["lunch"]}`); code != http.StatusUnprocessableEntity {
		t.Errorf("a drill of an unknown component: %d, want 422", code)
	}

	// crier drill, escalating: the owner is told when nobody acknowledges.
	cmd := exec.Command(crierBin, "drill", "--component", "emar", "--escalate")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "CRIER_NATS_URL=" + w.nats.URL()}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "published drill-") {
		t.Fatalf("crier drill: %v\n%s", err, out)
	}
	waitFor(t, "the escalating drill reaches the owner", 30*time.Second, func() bool { return told("owner@oakview.example", "drill") == 1 })
	if n := told("manager@oakview.example", "drill"); n != 2 {
		t.Errorf("the manager got %d drills, want 2", n)
	}
}
