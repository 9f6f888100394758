package pgtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func TestStaleDatabasesAreDroppedFreshOnesKept(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	stale := fmt.Sprintf("crier_test_%d_00c0ffee", time.Now().Add(-7*time.Hour).Unix())
	fresh := randomName("crier_test_")
	for _, name := range []string{stale, fresh} {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+fresh+" WITH (FORCE)") })
	dropStale(ctx, conn)
	exists := func(name string) bool {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if exists(stale) {
		t.Errorf("stale database %s was kept", stale)
	}
	if !exists(fresh) {
		t.Errorf("fresh database %s was dropped", fresh)
	}
	// A fresh database from NewDatabase works.
	if url := NewDatabase(t); url == "" {
		t.Fatal("no database")
	}
}
