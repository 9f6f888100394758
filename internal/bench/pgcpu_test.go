package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name may hold spaces and parentheses: fields count from
	// the last ')'.
	line := "2207 (po) (st gres) S 1 2207 2207 0 -1 4194304 4207 102868 0 13 150 25 2433 372 20 0 1 0 5486 222543872 7586 18446744073709551615 0 0 0 0\n"
	st, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.comm != "po) (st gres" || st.ticks != 175 || st.start != 5486 {
		t.Errorf("parsed %+v, want comm %q, ticks 175, start 5486", st, "po) (st gres")
	}
	for _, bad := range []string{
		"", "2207 postgres S 1", "2207 (postgres) S 1 2207 2207 0 -1 4194304 4207 102868 0 13 150\n",
		"2207 (postgres) S 1 2207 2207 0 -1 4194304 4207 102868 0 13 x 25 2433 372 20 0 1 0 5486 1\n",
	} {
		if st, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q) = %+v, want an error", bad, st)
		}
	}
}

func TestPostgresCPUSince(t *testing.T) {
	before := pgCPUSample{{1, 10}: 500, {2, 20}: 7000, {3, 30}: 40}
	after := pgCPUSample{
		{1, 10}: 650, // used 150 ticks
		// {2, 20} exited: its 7,000 ticks must not be taken off
		{3, 99}: 30, // pid 3 reused: a new process, all 30 ticks
		{4, 40}: 20, // started in between
	}
	if got, want := after.since(before), 2*time.Second; got != want {
		t.Errorf("since = %s, want %s", got, want)
	}
}

func TestSamplePostgresCPU(t *testing.T) {
	s, err := samplePostgresCPU()
	if err != nil {
		t.Skipf("no local PostgreSQL to sample: %v", err)
	}
	for k, ticks := range s {
		if k.pid <= 0 || k.start == 0 || ticks > 1<<40 {
			t.Errorf("sample %+v: %d ticks", k, ticks)
		}
	}
}

func TestPrintCPU(t *testing.T) {
	r := Report{Config: Config{Email: true}, Events: []EventResult{{}}, Deliveries: 200_000,
		CPU: 12 * time.Second, DBCPU: 21400 * time.Millisecond}
	var out bytes.Buffer
	r.Print(&out)
	for _, want := range []string{
		"CPU (this process: crier, NATS, sinks): 12s, 0.060 s per 1,000 deliveries\n",
		"CPU (PostgreSQL, all local postgres processes): 21.4s, 0.107 s per 1,000 deliveries\n",
		"CPU total: 33.4s, 0.167 s per 1,000 deliveries\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	r.DBCPU, r.DBCPUNote = 0, "no postgres process visible in /proc"
	out.Reset()
	r.Print(&out)
	for _, want := range []string{
		"CPU (this process: crier, NATS, sinks; PostgreSQL not counted): 12s, 0.060 s per 1,000 deliveries\n",
		"PostgreSQL CPU: not measured (no postgres process visible in /proc)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "CPU total") {
		t.Errorf("total printed without PostgreSQL's CPU:\n%s", out.String())
	}
}
