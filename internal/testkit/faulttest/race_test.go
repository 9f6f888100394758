//go:build race

package faulttest

// raceEnabled: the tests run with -race (see TestMain for the crier binary).
const raceEnabled = true
