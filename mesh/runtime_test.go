package mesh

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestTuneRuntimeForDaemon(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	t.Setenv("GOGC", "300") // the operator's setting wins
	if TuneRuntimeForDaemon() {
		t.Fatal("changed GOGC although the environment sets it")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC percent %d after a refused tune, want 100 untouched", got)
	}

	// t.Setenv above restores the caller's GOGC when the test ends.
	os.Unsetenv("GOGC")
	if !TuneRuntimeForDaemon() {
		t.Fatal("did not tune with GOGC unset")
	}
	if got := debug.SetGCPercent(100); got != DaemonGCPercent {
		t.Fatalf("GC percent %d, want %d", got, DaemonGCPercent)
	}
}
