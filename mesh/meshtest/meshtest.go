// Package meshtest holds the pollers every package's tests share: tests
// wait for a condition with a deadline, never sleep and hope. Test-only:
// no product package imports it.
package meshtest

import (
	"testing"
	"time"
)

// pollEvery is how often a condition is re-checked: often enough that a
// figure read off a poll is not dominated by it.
const pollEvery = 25 * time.Millisecond

// Eventually polls check until it returns nil, or fails the test with the
// last error once timeout has passed.
func Eventually(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	EventuallyEvery(t, pollEvery, timeout, what, check)
}

// EventuallyEvery is Eventually re-checking every every: for checks that
// cost a process or a round trip (end-to-end tests poll `meshnode status`).
func EventuallyEvery(t testing.TB, every, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(every)
	}
}

// WaitFor polls cond until it holds, or fails the test once timeout has
// passed.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pollEvery)
	}
}
