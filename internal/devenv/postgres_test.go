package devenv

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// refusingAddr returns a loopback address where nothing listens.
func refusingAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// clusterDir returns a directory the user postgres can reach when the test
// runs as root (t.TempDir's parent is private to the current user).
func clusterDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "pg")
}

func connect(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect to %s: %v", u, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestPrivateCluster starts PostgreSQL the way crier dev does on a machine
// without CRIER_DATABASE_URL and without a local server: initdb, pg_ctl
// start on a free port, a database crier_dev; then stops it.
func TestPrivateCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := clusterDir(t)
	start := time.Now()
	pg, err := StartPostgres(ctx, PostgresConfig{Probe: refusingAddr(t), Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = pg.Stop(context.Background())
		}
	})
	t.Logf("private cluster up in %s: %s", time.Since(start), pg.URL)
	if !pg.Private() || !strings.HasPrefix(pg.Source, "private cluster in ") {
		t.Errorf("source %q, private %t; want a private cluster", pg.Source, pg.Private())
	}
	u, err := url.Parse(pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Path != "/crier_dev" || u.Hostname() != "127.0.0.1" || u.Port() == "5432" {
		t.Errorf("URL %s: want database crier_dev on a private port", pg.URL)
	}
	for _, p := range []string{"data/PG_VERSION", "postgres.log", "run"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("cluster directory lacks %s: %v", p, err)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "run", ".s.PGSQL.*")); len(matches) == 0 {
		t.Error("no unix socket in the cluster's run directory")
	}

	// crier can use it: migrations and a query.
	st, err := store.Open(ctx, pg.URL, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	var db string
	if err := connect(t, pg.URL).QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "crier_dev" {
		t.Fatalf("current_database() = %q, %v", db, err)
	}

	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := pg.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		c.Close()
		t.Errorf("something still listens on %s after Stop", u.Host)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postmaster.pid still there after Stop: %v", err)
	}
}

// TestNoPostgres: nothing to use and nothing to start must say what to
// install.
func TestNoPostgres(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := StartPostgres(context.Background(), PostgresConfig{
		Probe: refusingAddr(t), Dir: filepath.Join(t.TempDir(), "pg"),
		BinGlobs: []string{filepath.Join(t.TempDir(), "postgresql", "*", "bin")},
	})
	if !errors.Is(err, ErrNoPostgres) {
		t.Fatalf("err = %v, want ErrNoPostgres", err)
	}
	for _, want := range []string{"initdb", "apt-get install postgresql", "brew install", "CRIER_DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
}

// TestLocalServer uses the local test server the way crier dev uses one on
// 127.0.0.1:5432: the first user that gets in, a database created for it.
func TestLocalServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	server, err := url.Parse(pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	name := "crier_devenv_" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "_")
	t.Cleanup(func() {
		_, _ = connect(t, pgtest.ServerURL()).Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	pg, err := StartPostgres(ctx, PostgresConfig{
		Probe:    server.Host,
		Users:    []string{"crier_no_such_user", server.User.Username()},
		Database: name,
		Dir:      filepath.Join(t.TempDir(), "pg-unused"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if pg.Private() || pg.Source != "local server at "+server.Host {
		t.Errorf("source %q: want the local server", pg.Source)
	}
	var db string
	if err := connect(t, pg.URL).QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != name {
		t.Fatalf("current_database() = %q, %v", db, err)
	}
	// A second start finds the database there.
	if _, err := StartPostgres(ctx, PostgresConfig{Probe: server.Host, Users: []string{server.User.Username()}, Database: name}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(t.TempDir(), "pg-unused")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a private cluster directory was created although a local server was used")
	}
}

// TestLocalServerUnusable: something answers on the probe address but is
// not a PostgreSQL that lets us in; useLocal reports why for every user.
func TestLocalServerUnusable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	cfg := PostgresConfig{Probe: ln.Addr().String(), Users: []string{"alice", "bob"}}.WithDefaults()
	if !answers(cfg.Probe) {
		t.Fatal("the fake server does not answer")
	}
	_, err = useLocal(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "as alice") || !strings.Contains(err.Error(), "as bob") {
		t.Errorf("err = %v, want a reason per user", err)
	}
}

func TestURLFromEnvironment(t *testing.T) {
	t.Parallel()
	pg, err := StartPostgres(context.Background(), PostgresConfig{URL: "postgres://x@db.example/crier"})
	if err != nil || pg.URL != "postgres://x@db.example/crier" || pg.Private() || pg.Source != "CRIER_DATABASE_URL" {
		t.Errorf("got %+v, %v", pg, err)
	}
	if err := pg.Stop(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestVersionOrder(t *testing.T) {
	t.Parallel()
	if versionOf("/usr/lib/postgresql/17/bin") <= versionOf("/usr/lib/postgresql/9/bin") {
		t.Error("17 must sort before 9")
	}
}

func TestSeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := pgtest.NewDatabase(t)
	for range 2 { // the second run changes nothing
		if err := Seed(ctx, u, nil); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(ctx, u, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cs, err := st.ListComponents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := st.ListSubscribers(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 5 || len(subs) != 3 {
		t.Errorf("got %d components and %d subscribers, want 5 and 3", len(cs), len(subs))
	}
}
