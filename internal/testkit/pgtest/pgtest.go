// Package pgtest gives each test its own freshly migrated PostgreSQL
// database, cloned from a template that is migrated once per test binary.
//
// The server is CRIER_TEST_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/postgres. A server that does not answer
// fails the test: a skipped dependency must not look like a pass.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crier-dev/crier/internal/store"
)

// ServerURL is the maintenance database URL tests connect to.
func ServerURL() string {
	if u := os.Getenv("CRIER_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// URLFor returns the URL of the named database on the test server.
func URLFor(name string) string {
	u, err := url.Parse(ServerURL())
	if err != nil {
		panic(err)
	}
	u.Path = "/" + name
	return u.String()
}

func admin(ctx context.Context) (*pgx.Conn, error) {
	return pgx.Connect(ctx, ServerURL())
}

// randomName is prefix, the creation time in Unix seconds and a random
// suffix, so that databases left by killed test runs can be recognised as
// stale.
func randomName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s%d_%s", prefix, time.Now().Unix(), hex.EncodeToString(b))
}

// staleAfter is how old a test database must be before another test run
// drops it: far longer than any test binary runs.
const staleAfter = 6 * time.Hour

// dropStale drops test databases that killed runs left behind: those whose
// name carries a creation time older than staleAfter.
func dropStale(ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname ~ '^crier_(tmpl|test)_[0-9]+_[0-9a-f]+$'`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	cutoff := time.Now().Add(-staleAfter).Unix()
	for _, name := range names {
		parts := strings.Split(name, "_")
		created, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil || created >= cutoff {
			continue
		}
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
}

func makeTemplate() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := admin(ctx)
	if err != nil {
		return "", fmt.Errorf("connect to test PostgreSQL at %s (start it, or set CRIER_TEST_DATABASE_URL): %w", ServerURL(), err)
	}
	defer conn.Close(ctx)
	dropStale(ctx, conn)
	name := randomName("crier_tmpl_")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create template database: %w", err)
	}
	st, err := store.Open(ctx, URLFor(name), 2)
	if err != nil {
		return "", err
	}
	_, err = st.Migrate(ctx, nil)
	st.Close()
	if err != nil {
		return "", err
	}
	return name, nil
}

// NewDatabase creates an empty, migrated database for t, drops it when the
// test ends, and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	templateOnce.Do(func() { templateName, templateErr = makeTemplate() })
	if templateErr != nil {
		t.Fatalf("pgtest: %v", templateErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := admin(ctx)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	name := randomName("crier_test_")
	// CREATE DATABASE ... TEMPLATE fails if another session is connected to
	// the template; retry briefly because parallel tests clone concurrently.
	for i := 0; ; i++ {
		_, err = conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, templateName))
		if err == nil || i == 50 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := admin(ctx)
		if err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return URLFor(name)
}

// NewStore returns a Store on a fresh database, closed when the test ends.
func NewStore(t testing.TB) *store.Store {
	t.Helper()
	url := NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, url, 16)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

// DropTemplate removes the template database; call it from TestMain after
// m.Run so the server does not collect templates.
func DropTemplate() {
	if templateName == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := admin(ctx)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+templateName+" WITH (FORCE)")
}

// Main runs a package's tests and then drops the template database:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	DropTemplate()
	os.Exit(code)
}
