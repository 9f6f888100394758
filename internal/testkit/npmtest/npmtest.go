// Package npmtest runs a Node.js script against an npm package, installed
// once per machine into the user cache directory, so that crier's output
// is checked by an implementation it shares no code with.
package npmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Dir installs pkg@version (once; later calls reuse it) and returns the
// node_modules directory holding it. Tests fail, not skip, when node or
// npm is missing: the check they make cannot be made otherwise.
func Dir(t testing.TB, pkg, version string) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("npmtest: %s is needed to check against %s: %v", tool, pkg, err)
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	root := filepath.Join(cache, "crier-npmtest", strings.ReplaceAll(pkg, "/", "_")+"@"+version)
	modules := filepath.Join(root, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, pkg, "package.json")); err == nil {
		return modules
	}
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	// Install beside, then rename: two test processes installing at once
	// both end with a whole installation.
	tmp, err := os.MkdirTemp(filepath.Dir(root), "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", tmp, pkg+"@"+version)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npmtest: npm install %s@%s: %v\n%s", pkg, version, err, out)
	}
	if err := os.Rename(tmp, root); err != nil {
		if _, statErr := os.Stat(filepath.Join(modules, pkg, "package.json")); statErr != nil {
			t.Fatalf("npmtest: %v", err)
		}
	}
	return modules
}

// Node runs script with node, with modules on NODE_PATH and stdin as its
// standard input, and returns its standard output; a failure (non-zero
// exit) fails the test with what the script printed.
func Node(t testing.TB, modules, script, stdin string) string {
	t.Helper()
	cmd := exec.Command("node", "-e", script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("npmtest: node: %v\n%s", err, fmt.Sprint(stderr.String()))
	}
	return string(out)
}
