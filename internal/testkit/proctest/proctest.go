// Package proctest helps tests that run the crier binary as a separate
// process: building it and collecting its output.
package proctest

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Build compiles cmd/crier into dir, with the race detector when race is
// set, and returns the binary's path.
func Build(dir string, race bool) (string, error) {
	bin := filepath.Join(dir, "crier")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/crier-dev/crier/cmd/crier")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// Output collects a process's output while a test reads it; it is safe for
// concurrent use.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Contains reports whether the output so far holds s.
func (o *Output) Contains(s string) bool { return strings.Contains(o.String(), s) }

// Tail returns the last n lines of the output so far.
func (o *Output) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(o.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
