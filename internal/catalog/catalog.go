// Package catalog holds the example component catalog and subscribers that
// `crier dev` loads, and a loader that puts them into a store.
package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/crier-dev/crier/internal/store"
)

// Example is the vendor's catalog: eMar, CAPA and Atlas Sync with its two
// sync pods. Parents come before children.
var Example = []store.Component{
	{Key: "emar", Name: "eMar", Description: "Electronic medication administration records"},
	{Key: "capa", Name: "CAPA", Description: "Pharmacy ordering and stock"},
	{Key: "atlas-sync", Name: "Atlas Sync", Description: "Device synchronisation"},
	{Key: "atlas-sync/sync-pod-a", Name: "Sync Pod A", Description: "Device sync server A"},
	{Key: "atlas-sync/sync-pod-b", Name: "Sync Pod B", Description: "Device sync server B"},
}

// ExampleSubscribers are a few confirmed care home managers.
var ExampleSubscribers = []store.NewSubscriber{
	{Email: "manager@oakview-care.example", Phone: "+447400123456", Name: "Alex Morgan", Organisation: "Oakview Care Home",
		Components: []string{"atlas-sync", "emar"}, ConfirmEmail: true, ConfirmSMS: true},
	{Email: "deputy@riverside-care.example", Name: "Sam Patel", Organisation: "Riverside Care",
		Components: []string{"atlas-sync/sync-pod-a"}, ConfirmEmail: true},
	{Phone: "+447400123457", Name: "Jo Williams", Organisation: "Hillcrest Nursing",
		Components: []string{"capa", "emar"}, ConfirmSMS: true},
}

// Load puts components into st (creating or updating them) and creates the
// subscribers whose addresses do not exist yet.
func Load(ctx context.Context, st *store.Store, components []store.Component, subscribers []store.NewSubscriber) error {
	for _, c := range components {
		if _, err := st.PutComponent(ctx, c); err != nil {
			return fmt.Errorf("load catalog: %w", err)
		}
	}
	for _, s := range subscribers {
		if _, err := st.CreateSubscriber(ctx, s); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("load subscribers: %w", err)
		}
	}
	return nil
}
