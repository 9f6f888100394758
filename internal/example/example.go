// Package example holds the example data that `crier dev`, the benchmark
// and tests load: the vendor's component catalog (eMar, CAPA, Atlas Sync
// with its two sync pods) and a few confirmed care home managers. It is not
// the catalog itself, which lives in PostgreSQL (package store) and is
// managed with `crier components` and /v1/components.
package example

import (
	"context"
	"errors"
	"fmt"

	"github.com/crier-dev/crier/internal/store"
)

// Components returns the vendor's catalog, parents before children. Each
// call returns a new slice.
func Components() []store.Component {
	return []store.Component{
		{Key: "emar", Name: "eMar", Description: "Electronic medication administration records"},
		{Key: "capa", Name: "CAPA", Description: "Pharmacy ordering and stock"},
		{Key: "atlas-sync", Name: "Atlas Sync", Description: "Device synchronisation"},
		{Key: "atlas-sync/sync-pod-a", Name: "Sync Pod A", Description: "Device sync server A"},
		{Key: "atlas-sync/sync-pod-b", Name: "Sync Pod B", Description: "Device sync server B"},
	}
}

// Subscribers returns a few confirmed care home managers subscribed to
// Components. Each call returns a new slice.
func Subscribers() []store.NewSubscriber {
	return []store.NewSubscriber{
		{Email: "manager@oakview-care.example", Phone: "+447400123456", Name: "Alex Morgan", Organisation: "Oakview Care Home",
			Components: []string{"atlas-sync", "emar"}, ConfirmEmail: true, ConfirmSMS: true},
		{Email: "deputy@riverside-care.example", Name: "Sam Patel", Organisation: "Riverside Care",
			Components: []string{"atlas-sync/sync-pod-a"}, ConfirmEmail: true},
		{Phone: "+447400123457", Name: "Jo Williams", Organisation: "Hillcrest Nursing",
			Components: []string{"capa", "emar"}, ConfirmSMS: true},
	}
}

// Load puts components into st (creating or updating them) and creates the
// subscribers whose addresses do not exist yet.
func Load(ctx context.Context, st *store.Store, components []store.Component, subscribers []store.NewSubscriber) error {
	for _, c := range components {
		if _, err := st.PutComponent(ctx, c); err != nil {
			return fmt.Errorf("load components: %w", err)
		}
	}
	for _, s := range subscribers {
		if _, err := st.CreateSubscriber(ctx, s); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("load subscribers: %w", err)
		}
	}
	return nil
}
