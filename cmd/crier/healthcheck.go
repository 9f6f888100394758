package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// cmdHealthcheck asks the crier serve of this host (or container) whether
// it is ready. It exists for container health checks: the runtime image has
// no shell, curl or wget.
func cmdHealthcheck(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("crier healthcheck", flag.ContinueOnError)
	path := fs.String("path", "/readyz", "path to ask: /readyz (PostgreSQL and NATS reachable) or /healthz (the process answers)")
	target := fs.String("url", "", "full URL to ask instead (default http://127.0.0.1:PORT/PATH, PORT from CRIER_HTTP_ADDR)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: crier healthcheck [--path /readyz] [--url URL]\n\n"+
			"Exits 0 when crier serve on this host answers 200, 1 otherwise. For container health checks.\n\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, e, args); err != nil {
		return err
	}
	u := *target
	if u == "" {
		cfg, err := loadConfig(e)
		if err != nil {
			return err
		}
		_, port, err := net.SplitHostPort(cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("CRIER_HTTP_ADDR %q: %w", cfg.HTTPAddr, err)
		}
		u = "http://" + net.JoinHostPort("127.0.0.1", port) + *path
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s: %w", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	e.printf("%s", body)
	return nil
}
