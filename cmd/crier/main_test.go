package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/natstest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// cli runs crier in-process with the given environment.
type cli struct {
	t   *testing.T
	env map[string]string
}

func (c cli) run(args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	e := &env{getenv: func(k string) string { return c.env[k] }, stdout: &out, stderr: &errb}
	code = run(context.Background(), e, args)
	return code, out.String(), errb.String()
}

func (c cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run(args...)
	if code != 0 {
		c.t.Fatalf("crier %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func TestUsageAndHelp(t *testing.T) {
	c := cli{t: t, env: map[string]string{}}
	if code, out, _ := c.run(); code != 2 || !strings.Contains(out, "Commands:") {
		t.Errorf("no arguments: exit %d, %q", code, out)
	}
	if code, _, errs := c.run("frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, errs)
	}
	for _, cmd := range commands() {
		code, out, errs := c.run(cmd.name, "--help")
		if code != 0 || !strings.Contains(out+errs, "Usage") {
			t.Errorf("crier %s --help: exit %d, %q", cmd.name, code, out+errs)
		}
	}
}

func TestConfigurationErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{}, []string{"migrate"}, "CRIER_DATABASE_URL: is required"},
		{map[string]string{"CRIER_DATABASE_URL": "mysql://x"}, []string{"migrate"}, "CRIER_DATABASE_URL: scheme"},
		{map[string]string{"CRIER_DATABASE_URL": "postgres://x/y", "CRIER_SMTP_POOL": "lots"}, []string{"serve"}, "CRIER_SMTP_POOL: must be a whole number"},
		{map[string]string{"CRIER_DATABASE_URL": "postgres://x/y", "CRIER_SMTP_URL": "smtp://h:25"}, []string{"serve"}, "CRIER_MAIL_FROM: is required"},
		{map[string]string{"CRIER_DATABASE_URL": "postgres://x/y", "CRIER_TWILIO_ACCOUNT_SID": "AC123"}, []string{"serve"}, "CRIER_TWILIO_AUTH_TOKEN"},
		{map[string]string{"CRIER_DATABASE_URL": "postgres://x/y", "CRIER_MAX_AGE": "forever"}, []string{"serve"}, "CRIER_MAX_AGE: must be a positive duration"},
		{map[string]string{"CRIER_DATABASE_URL": "postgres://x/y", "CRIER_TIMEZONE": "Mars/Olympus"}, []string{"serve"}, "CRIER_TIMEZONE"},
	}
	for _, tc := range cases {
		code, _, errs := cli{t: t, env: tc.env}.run(tc.args...)
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		if code != 1 || len(lines) != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v %v: exit %d, stderr %q; want one line containing %q", tc.env, tc.args, code, errs, tc.want)
		}
	}
}

func TestAdminCommands(t *testing.T) {
	t.Parallel()
	ns := natstest.New(t)
	c := cli{t: t, env: map[string]string{"CRIER_DATABASE_URL": pgtest.NewDatabase(t), "CRIER_NATS_URL": ns.URL()}}
	c.ok("migrate")

	c.ok("components", "put", "atlas-sync", "--name", "Atlas Sync")
	c.ok("components", "put", "atlas-sync/sync-pod-a", "--name", "Sync Pod A", "--description", "Device sync server A")
	c.ok("components", "put", "emar", "--name", "eMar")
	if code, _, errs := c.run("components", "put", "capa/orphan", "--name", "Orphan"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("component without parent: exit %d %q", code, errs)
	}
	if code, _, errs := c.run("components", "put", "Bad Key", "--name", "x"); code != 1 || !strings.Contains(errs, "not a component key") {
		t.Errorf("bad key: exit %d %q", code, errs)
	}
	out := c.ok("components", "list")
	if !strings.Contains(out, "atlas-sync/sync-pod-a  Sync Pod A") {
		t.Errorf("components list:\n%s", out)
	}

	if out := c.ok("subscribers", "add", "--phone", "07400 123456", "--email", "jo@care.example", "--component", "atlas-sync,emar", "--confirmed"); !strings.Contains(out, "created subscriber") {
		t.Errorf("add: %q", out)
	}
	if code, _, errs := c.run("subscribers", "add", "--phone", "01632 960000", "--component", "emar"); code != 1 || !strings.Contains(errs, "--phone") {
		t.Errorf("landline accepted: exit %d %q", code, errs)
	}
	if code, _, errs := c.run("subscribers", "add", "--email", "jo@care.example", "--component", "emar"); code != 1 || !strings.Contains(errs, "already exists") {
		t.Errorf("duplicate email: exit %d %q", code, errs)
	}
	if code, _, errs := c.run("subscribers", "add", "--email", "not an address", "--component", "emar"); code != 1 || !strings.Contains(errs, "not an email address") {
		t.Errorf("bad email: exit %d %q", code, errs)
	}
	out = c.ok("subscribers", "list")
	if !strings.Contains(out, "+447400123456") || !strings.Contains(out, "atlas-sync,emar") {
		t.Errorf("subscribers list:\n%s", out)
	}
	c.ok("subscribers", "add", "--email", "deputy@care.example", "--name", "=HYPERLINK(\"https://evil.example\")", "--component", "emar")
	want := "email,phone,name,organisation,components,role,webhook_url,teams_url,slack_url,email_state,sms_state\r\n" +
		"jo@care.example,+447400123456,,,atlas-sync;emar,primary,,,,confirmed,confirmed\r\n" +
		"deputy@care.example,,\"'=HYPERLINK(\"\"https://evil.example\"\")\",,emar,primary,,,,unconfirmed,\r\n"
	if out := c.ok("subscribers", "export"); out != want {
		t.Errorf("subscribers export:\n%q\nwant\n%q", out, want)
	}

	if code, _, errs := c.run("components", "rm", "atlas-sync"); code != 1 || !strings.Contains(errs, "--force") {
		t.Errorf("rm with children: exit %d %q", code, errs)
	}

	// publish: from a file, twice (the stream reports the duplicate), and
	// from flags.
	ev := incidenttest.Updates()[0]
	file := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(file, incidenttest.Raw(ev), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := c.ok("publish", "--file", file); !strings.Contains(out, "sequence 1 duplicate false") {
		t.Errorf("publish: %q", out)
	}
	if out := c.ok("publish", "--file", file); !strings.Contains(out, "duplicate true") {
		t.Errorf("republish: %q", out)
	}
	if out := c.ok("publish", "--incident-id", "inc-2", "--status", "investigating", "--title", "eMar slow", "--component", "emar"); !strings.Contains(out, "sequence 2") {
		t.Errorf("publish with flags: %q", out)
	}
	if code, _, errs := c.run("publish", "--incident-id", "inc-2", "--status", "scheduled", "--title", "x", "--component", "emar"); code != 1 || !strings.Contains(errs, "status") {
		t.Errorf("invalid event published: exit %d %q", code, errs)
	}

	// deliveries: a report with a failure, then retry.
	ctx := context.Background()
	st, err := store.Open(ctx, c.env["CRIER_DATABASE_URL"], 2)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Ingest(ctx, ev, incidenttest.Raw(ev), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, error_code = '550', last_error = 'mailbox unknown' WHERE channel = 'email'`); err != nil {
		t.Fatal(err)
	}
	out = c.ok("deliveries", "--incident", ev.IncidentID)
	for _, want := range []string{"email    failed  1", "sms      queued  1", "failures:", "mailbox unknown"} {
		if !strings.Contains(out, want) {
			t.Errorf("deliveries report lacks %q:\n%s", want, out)
		}
	}
	if out := c.ok("deliveries", "retry", "--event", ev.ID); !strings.Contains(out, "requeued 1") {
		t.Errorf("retry: %q", out)
	}
	if out := c.ok("deliveries", "--event", ev.ID); !strings.Contains(out, "email    queued  1") {
		t.Errorf("after retry:\n%s", out)
	}
	if code, _, _ := c.run("deliveries"); code != 1 {
		t.Errorf("deliveries without scope: exit %d", code)
	}

	c.ok("subscribers", "rm", "1")
	c.ok("components", "rm", "atlas-sync", "--force")
	if out := c.ok("components", "list"); strings.Contains(out, "atlas-sync") {
		t.Errorf("forced rm left:\n%s", out)
	}
}

// TestStartUpErrorsHideCredentials starts crier with secret-bearing URLs
// that cannot connect: PostgreSQL with a password, then NATS with a user
// and password and with a token. What crier prints names the service and
// never the secret.
func TestStartUpErrorsHideCredentials(t *testing.T) {
	db := pgtest.NewDatabase(t)
	for _, tc := range []struct {
		env    map[string]string
		secret string
	}{
		{map[string]string{"CRIER_DATABASE_URL": "postgres://crier:Db-s3cret-42@127.0.0.1:1/crier?sslmode=disable"}, "Db-s3cret-42"},
		{map[string]string{"CRIER_DATABASE_URL": db, "CRIER_NATS_URL": "nats://crier:Nats-s3cret-42@127.0.0.1:1"}, "Nats-s3cret-42"},
		{map[string]string{"CRIER_DATABASE_URL": db, "CRIER_NATS_URL": "nats://Tok-s3cret-42@127.0.0.1:1"}, "Tok-s3cret-42"},
		{map[string]string{"CRIER_DATABASE_URL": db, "CRIER_NATS_URL": "nats://127.0.0.1:1,nats://a:Both-s3cret-42@127.0.0.1:2"}, "Both-s3cret-42"},
	} {
		env := map[string]string{"CRIER_HTTP_ADDR": "127.0.0.1:0", "CRIER_SMTP_URL": "smtp://u:Smtp-s3cret-42@127.0.0.1:1", "CRIER_MAIL_FROM": "status@example.org"}
		for k, v := range tc.env {
			env[k] = v
		}
		code, out, errs := cli{t: t, env: env}.run("serve")
		if code == 0 {
			t.Errorf("%v: crier serve succeeded", tc.env)
		}
		for _, secret := range []string{tc.secret, "Smtp-s3cret-42"} {
			if strings.Contains(out+errs, secret) {
				t.Errorf("%v: the output shows %q:\n%s%s", tc.env, secret, out, errs)
			}
		}
		if !strings.Contains(errs, "connect to") {
			t.Errorf("%v: the error does not say what failed:\n%s", tc.env, errs)
		}
	}
}
