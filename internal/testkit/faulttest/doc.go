// Package faulttest holds crier's reliability and security suite: tests
// that run the real `crier serve` binary as separate processes against a
// fresh PostgreSQL database, an embedded NATS server, a test SMTP server and
// a Twilio stand-in, and then break things: SIGKILL at random moments,
// SIGTERM during a large send, NATS, PostgreSQL and the providers going
// away, hostile events and requests.
//
// The package has no code of its own beyond this comment; everything is in
// its _test.go files (harness_test.go builds the binary once per test
// binary and runs the processes).
package faulttest
