package store

// Exported for the tests of package store_test.
var (
	ClaimSQL  = claimSQL
	ClaimPlan = claimPlan
)
