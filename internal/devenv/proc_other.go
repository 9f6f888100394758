//go:build !unix

package devenv

import (
	"context"
	"os/exec"
	"time"
)

// run runs a PostgreSQL program and returns its combined output.
func (c *cluster) run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 3 * time.Second
	return cmd.CombinedOutput()
}

// prepareOwner has nothing to do where there is no root user.
func (c *cluster) prepareOwner() error { return nil }
