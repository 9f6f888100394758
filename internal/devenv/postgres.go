package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoPostgres means no PostgreSQL could be found or started; its message
// says what to install.
var ErrNoPostgres = errors.New("no PostgreSQL to use")

// DefaultProbe is where a local PostgreSQL server is looked for.
const DefaultProbe = "127.0.0.1:5432"

// DefaultBinGlobs are where PostgreSQL's server binaries are looked for when
// initdb and pg_ctl are not on PATH; the newest version found wins.
var DefaultBinGlobs = []string{
	"/usr/lib/postgresql/*/bin",         // Debian, Ubuntu
	"/usr/pgsql-*/bin",                  // PGDG packages for Fedora, RHEL
	"/usr/local/pgsql/bin",              // built from source
	"/opt/homebrew/opt/postgresql*/bin", // Homebrew on Apple silicon
	"/usr/local/opt/postgresql*/bin",    // Homebrew on Intel
}

// PostgresConfig says where crier dev's database comes from.
type PostgresConfig struct {
	// URL, when set (CRIER_DATABASE_URL), is used as it is.
	URL string
	// Probe is the address of a local server to use when URL is empty
	// (default DefaultProbe); "off" skips it.
	Probe string
	// Users are tried in turn, without a password (PGPASSWORD and
	// ~/.pgpass apply), on the server at Probe; default postgres, then the
	// current OS user.
	Users []string
	// Database is created on the server at Probe or in the private cluster
	// when missing (default crier_dev).
	Database string
	// Dir holds a private cluster: data/, run/ (the unix socket) and
	// postgres.log (default .crier-dev/pg).
	Dir string
	// BinGlobs are searched for initdb and pg_ctl when they are not on PATH
	// (default DefaultBinGlobs).
	BinGlobs []string
	// Log receives progress messages; nil discards them.
	Log *slog.Logger
}

// WithDefaults fills in zero fields.
func (c PostgresConfig) WithDefaults() PostgresConfig {
	if c.Probe == "" {
		c.Probe = DefaultProbe
	}
	if len(c.Users) == 0 {
		c.Users = []string{"postgres"}
		if u, err := user.Current(); err == nil && u.Username != "" && u.Username != "postgres" {
			c.Users = append(c.Users, u.Username)
		}
	}
	if c.Database == "" {
		c.Database = "crier_dev"
	}
	if c.Dir == "" {
		c.Dir = filepath.Join(DefaultDir, "pg")
	}
	if c.BinGlobs == nil {
		c.BinGlobs = DefaultBinGlobs
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Postgres is the database crier dev uses.
type Postgres struct {
	// URL is the connection URL of the database.
	URL string
	// Source says where it came from, for people: "CRIER_DATABASE_URL",
	// "local server at 127.0.0.1:5432" or "private cluster in DIR".
	Source string

	cluster *cluster // set when this process started a private cluster
	once    sync.Once
	stopErr error
}

// StartPostgres returns the database described by cfg.URL; without one, a
// database on the local server at cfg.Probe; without one, a database in a
// private cluster in cfg.Dir that it initialises (first time) and starts on
// a free port. A private cluster runs until Stop. When none of these is
// possible the error wraps ErrNoPostgres and says what to install.
func StartPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	cfg = cfg.WithDefaults()
	if cfg.URL != "" {
		return &Postgres{URL: cfg.URL, Source: "CRIER_DATABASE_URL"}, nil
	}
	if cfg.Probe != "off" && answers(cfg.Probe) {
		u, err := useLocal(ctx, cfg)
		if err == nil {
			return &Postgres{URL: u, Source: "local server at " + cfg.Probe}, nil
		}
		cfg.Log.WarnContext(ctx, "a PostgreSQL server answers but cannot be used; starting a private cluster instead (set CRIER_DATABASE_URL to use that server)",
			"addr", cfg.Probe, "error", err)
	}
	bin, err := findBinaries(cfg.BinGlobs)
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, dir: cfg.Dir, log: cfg.Log}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	u := c.url(cfg.Database)
	if err := createDatabase(ctx, c.url("postgres"), cfg.Database); err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = c.stop(stopCtx)
		return nil, err
	}
	return &Postgres{URL: u, Source: "private cluster in " + c.dir, cluster: c}, nil
}

// Private reports whether this process started the database's cluster.
func (p *Postgres) Private() bool { return p.cluster != nil }

// Stop stops a private cluster (fast shutdown: sessions are ended, nothing
// committed is lost); for other sources it does nothing. It is idempotent.
func (p *Postgres) Stop(ctx context.Context) error {
	p.once.Do(func() {
		if p.cluster != nil {
			p.stopErr = p.cluster.stop(ctx)
		}
	})
	return p.stopErr
}

// answers reports whether something accepts TCP connections at addr.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// useLocal connects to the server at cfg.Probe as each of cfg.Users in turn
// and returns the URL of cfg.Database there, creating it when missing.
func useLocal(ctx context.Context, cfg PostgresConfig) (string, error) {
	var errs []error
	for _, name := range cfg.Users {
		base := (&url.URL{Scheme: "postgres", User: url.User(name), Host: cfg.Probe, Path: "/postgres", RawQuery: "connect_timeout=5"}).String()
		err := createDatabase(ctx, base, cfg.Database)
		if err == nil {
			return (&url.URL{Scheme: "postgres", User: url.User(name), Host: cfg.Probe, Path: "/" + cfg.Database}).String(), nil
		}
		errs = append(errs, fmt.Errorf("as %s: %w", name, err))
	}
	return "", errors.Join(errs...)
}

// createDatabase connects to adminURL and creates the database name unless
// it exists.
func createDatabase(ctx context.Context, adminURL, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created meanwhile
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// binaries are the PostgreSQL server programs a private cluster needs.
type binaries struct {
	initdb, pgCtl string
}

// findBinaries looks for initdb and pg_ctl on PATH, then in globs (newest
// version first).
func findBinaries(globs []string) (binaries, error) {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if pgCtl, err := exec.LookPath("pg_ctl"); err == nil {
			return binaries{initdb: initdb, pgCtl: pgCtl}, nil
		}
	}
	var dirs []string
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		dirs = append(dirs, m...)
	}
	slices.SortStableFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	for _, d := range dirs {
		b := binaries{initdb: filepath.Join(d, "initdb"), pgCtl: filepath.Join(d, "pg_ctl")}
		if executable(b.initdb) && executable(b.pgCtl) {
			return b, nil
		}
	}
	return binaries{}, fmt.Errorf("%w: CRIER_DATABASE_URL is not set, no server answers on %s, and PostgreSQL's server programs "+
		"(initdb, pg_ctl) are neither on PATH nor in %s. Install PostgreSQL "+
		"(Debian/Ubuntu: sudo apt-get install postgresql; Fedora: sudo dnf install postgresql-server; macOS: brew install postgresql@17) "+
		"and run crier dev again, or set CRIER_DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/DATABASE",
		ErrNoPostgres, DefaultProbe, strings.Join(globs, ", "))
}

var versionRe = regexp.MustCompile(`[0-9]+`)

// versionOf is the first number in a path such as /usr/lib/postgresql/17/bin.
func versionOf(dir string) int {
	n, _ := strconv.Atoi(versionRe.FindString(dir))
	return n
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// cluster is a private PostgreSQL cluster in dir.
type cluster struct {
	bin binaries
	dir string // absolute
	log *slog.Logger

	port      int
	socketDir string
	tmpSocket bool // socketDir is a temporary directory to remove on stop
}

func (c *cluster) dataDir() string { return filepath.Join(c.dir, "data") }

func (c *cluster) url(db string) string {
	return (&url.URL{Scheme: "postgres", User: url.User("postgres"), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path: "/" + db, RawQuery: "sslmode=disable"}).String()
}

// start initialises the cluster on first use and starts it on a free port,
// stopping first a server left running by an earlier run that was killed.
func (c *cluster) start(ctx context.Context) error {
	abs, err := filepath.Abs(c.dir)
	if err != nil {
		return fmt.Errorf("postgresql: %w", err)
	}
	c.dir = abs
	if strings.ContainsAny(c.dir, `'"\`) {
		return fmt.Errorf("postgresql: the cluster directory %s must not contain quotes or backslashes", c.dir)
	}
	c.socketDir = filepath.Join(c.dir, "run")
	if err := os.MkdirAll(c.socketDir, 0o700); err != nil {
		return fmt.Errorf("postgresql: %w", err)
	}
	// A unix socket path is limited to about 100 bytes.
	if len(c.socketDir)+len("/.s.PGSQL.65535") > 100 {
		if c.socketDir, err = os.MkdirTemp("", "crier-pg-"); err != nil {
			return fmt.Errorf("postgresql: %w", err)
		}
		c.tmpSocket = true
	}
	if err := c.prepareOwner(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(c.dataDir(), "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		c.log.InfoContext(ctx, "initialising a private PostgreSQL cluster", "dir", c.dataDir(), "initdb", c.bin.initdb)
		out, err := c.run(ctx, c.bin.initdb, "-D", c.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
		if err != nil {
			return c.fail("initdb", append(out, []byte("\n(an interrupted first run can leave the directory half made: remove "+c.dir+" and try again)")...), err)
		}
	}
	// pg_ctl status succeeds only when a server runs on this data directory.
	if _, err := c.run(ctx, c.bin.pgCtl, "status", "-D", c.dataDir()); err == nil {
		c.log.WarnContext(ctx, "stopping a private PostgreSQL left running by an earlier crier dev", "dir", c.dataDir())
		if out, err := c.run(ctx, c.bin.pgCtl, "stop", "-D", c.dataDir(), "-m", "fast", "-w", "-t", "30"); err != nil {
			return c.fail("pg_ctl stop", out, err)
		}
	}
	if c.port, err = freePort(); err != nil {
		return fmt.Errorf("postgresql: %w", err)
	}
	opts := fmt.Sprintf("-p %d -k '%s' -c listen_addresses=127.0.0.1", c.port, c.socketDir)
	logFile := filepath.Join(c.dir, "postgres.log")
	out, err := c.run(ctx, c.bin.pgCtl, "start", "-D", c.dataDir(), "-l", logFile, "-w", "-t", "60", "-o", opts)
	if err != nil {
		return c.fail("pg_ctl start", append(out, tail(logFile)...), err)
	}
	c.log.InfoContext(ctx, "private PostgreSQL started", "dir", c.dataDir(), "port", c.port, "socket_dir", c.socketDir, "log", logFile)
	return nil
}

// stop stops the cluster (fast shutdown) and waits for it.
func (c *cluster) stop(ctx context.Context) error {
	defer func() {
		if c.tmpSocket {
			_ = os.RemoveAll(c.socketDir)
		}
	}()
	out, err := c.run(ctx, c.bin.pgCtl, "stop", "-D", c.dataDir(), "-m", "fast", "-w", "-t", "30")
	if err != nil {
		return c.fail("pg_ctl stop", out, err)
	}
	c.log.InfoContext(ctx, "private PostgreSQL stopped", "dir", c.dataDir())
	return nil
}

func (c *cluster) fail(what string, out []byte, err error) error {
	msg := strings.TrimSpace(string(out))
	if msg != "" {
		msg = ":\n" + msg
	}
	hint := ""
	if os.Geteuid() == 0 {
		hint = fmt.Sprintf("\n(running as root, PostgreSQL runs as the user postgres, which must be able to reach %s)", c.dir)
	}
	return fmt.Errorf("postgresql: %s in %s: %w%s%s", what, c.dir, err, msg, hint)
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return append([]byte("\n"), bytes.Join(lines, []byte("\n"))...)
}
