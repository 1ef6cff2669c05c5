package discovery

import (
	"testing"
	"time"
)

// TestStatsCountGossip shows the counters move with real gossip: probes
// complete, full state exchanges merge, and the table's change time is
// that of the last change.
func TestStatsCountGossip(t *testing.T) {
	tm := newTestMesh(t)
	before := time.Now()
	nodes, _ := startMesh(t, tm, 3)
	d := nodes[1].d
	waitFor(t, 15*time.Second, "probes and push/pulls counted", func() bool {
		st := d.Stats()
		return st.Probes >= 3 && st.PushPulls >= 1
	})
	st := d.Stats()
	if st.LastChange.Before(before) || st.LastChange.After(time.Now()) {
		t.Fatalf("LastChange %v is not within the test (started %v)", st.LastChange, before)
	}
	if st.Revocations != 0 || len(st.Rejections) != 0 {
		t.Fatalf("Stats = %+v, want no revocations or rejections", st)
	}
	probes := st.Probes
	waitFor(t, 10*time.Second, "probe counter to keep growing", func() bool { return d.Stats().Probes > probes })
}
