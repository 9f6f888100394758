//go:build unix

package devenv

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// run runs a PostgreSQL program and returns its combined output. As root it
// runs the program as the user postgres (initdb and pg_ctl refuse to run as
// root). The program gets its own process group, so the Ctrl-C that the
// terminal sends to crier dev does not reach the server it starts: crier
// dev stops it itself, after crier.
func (c *cluster) run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	var cmd *exec.Cmd
	switch {
	case os.Geteuid() != 0:
		cmd = exec.CommandContext(ctx, bin, args...)
	case haveRunuser():
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	default:
		quoted := make([]string, 0, len(args)+1)
		for _, a := range append([]string{bin}, args...) {
			quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
		}
		cmd = exec.CommandContext(ctx, "su", "postgres", "-s", "/bin/sh", "-c", strings.Join(quoted, " "))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A server that kept our output pipe open must not hang us.
	cmd.WaitDelay = 3 * time.Second
	return cmd.CombinedOutput()
}

func haveRunuser() bool {
	_, err := exec.LookPath("runuser")
	return err == nil
}

// prepareOwner, when running as root, hands the cluster directory to the
// user postgres and checks that it can write there.
func (c *cluster) prepareOwner() error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("postgresql: initdb refuses to run as root and there is no user postgres to run it as: run crier dev as an ordinary user, or install PostgreSQL's server package (which creates that user): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dirs := []string{c.dir}
	if c.tmpSocket {
		dirs = append(dirs, c.socketDir)
	}
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
		if err != nil {
			return fmt.Errorf("postgresql: hand %s to the user postgres: %w", d, err)
		}
	}
	if out, err := c.run(context.Background(), "test", "-w", c.dir, "-a", "-x", c.dir); err != nil {
		return fmt.Errorf("postgresql: running as root, PostgreSQL must run as the user postgres, which cannot write to %s "+
			"(a parent directory is not searchable by others?); choose another --data-dir or chmod o+x its parents: %v %s", c.dir, err, out)
	}
	return nil
}
