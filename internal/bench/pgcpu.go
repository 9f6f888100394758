package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// PostgreSQL runs in processes of its own, which getrusage on this process
// does not see. When the server is on this machine its CPU is read from
// /proc instead, so the report can tell what a delivery costs in total.

// clockTicks is USER_HZ, the unit of the times in /proc/<pid>/stat: 100 on
// Linux whatever the kernel's HZ (reading sysconf(_SC_CLK_TCK) needs cgo).
const clockTicks = 100

// procStat is what the bench uses of one /proc/<pid>/stat line.
type procStat struct {
	comm  string
	ticks uint64 // utime + stime (fields 14 and 15)
	start uint64 // starttime (field 22), to tell a reused pid apart
}

// parseProcStat parses one /proc/<pid>/stat line. The command name, field
// 2, is in parentheses and may itself contain spaces and parentheses, so
// the fields after it are counted from the last ')'.
func parseProcStat(line []byte) (procStat, error) {
	open, end := bytes.IndexByte(line, '('), bytes.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return procStat{}, errors.New("no command name in parentheses")
	}
	// fields[0] is field 3 (state), so field n is fields[n-3].
	fields := bytes.Fields(line[end+1:])
	if len(fields) < 22-2 {
		return procStat{}, fmt.Errorf("%d fields after the command name, want at least 20", len(fields))
	}
	var n [3]uint64
	for i, f := range [3]int{14, 15, 22} {
		v, err := strconv.ParseUint(string(fields[f-3]), 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("field %d: %w", f, err)
		}
		n[i] = v
	}
	return procStat{comm: string(line[open+1 : end]), ticks: n[0] + n[1], start: n[2]}, nil
}

// procKey names a process across samples: a pid that was reused in
// between has another start time.
type procKey struct {
	pid   int
	start uint64
}

// pgCPUSample is the CPU time, in clock ticks, of each local postgres
// process at one moment.
type pgCPUSample map[procKey]uint64

// samplePostgresCPU reads the CPU time of every process whose name
// (/proc/<pid>/comm, also field 2 of its stat) is "postgres": the
// postmaster, its background processes and every backend, whichever
// database or client they serve, so another workload on the same server
// counts too.
func samplePostgresCPU() (pgCPUSample, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	s := pgCPUSample{}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // exited since, or hidden
		}
		st, err := parseProcStat(b)
		if err != nil {
			return nil, fmt.Errorf("/proc/%s/stat: %w", name, err)
		}
		if st.comm == "postgres" {
			s[procKey{pid, st.start}] = st.ticks
		}
	}
	if len(s) == 0 {
		return nil, errors.New("no postgres process visible in /proc")
	}
	return s, nil
}

// since is the CPU the processes used between before and s: a process in
// both counts its increase, one started in between all of its time. A
// process that exited in between is in neither sum, and what it used
// between the samples is lost: the bench's own short connections (one per
// event, for the fan-out time) and autovacuum workers that came and went.
// Counting per process keeps such an exit from also taking away what the
// process had used before the first sample.
func (s pgCPUSample) since(before pgCPUSample) time.Duration {
	var ticks uint64
	for k, t := range s {
		if t0, ok := before[k]; ok {
			t -= min(t, t0)
		}
		ticks += t
	}
	return time.Duration(ticks) * time.Second / clockTicks
}
