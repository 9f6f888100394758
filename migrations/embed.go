// Package migrations holds crier's SQL migrations, embedded in the binary and
// applied with goose (see internal/store.Migrate).
package migrations

import "embed"

// FS holds the numbered goose migrations.
//
//go:embed *.sql
var FS embed.FS
