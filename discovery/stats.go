package discovery

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// counters are gossip's own monotonic counters, for metrics. Atomics: they
// are bumped from memberlist's goroutines and read at scrape time.
type counters struct {
	pushPulls  atomic.Uint64 // remote states merged (push/pull, join)
	probes     atomic.Uint64 // probe round trips completed
	lastChange atomic.Int64  // unix nanoseconds of the last table change
}

// Stats is a snapshot of gossip's counters.
type Stats struct {
	PushPulls   uint64
	Probes      uint64
	Revocations int
	LastChange  time.Time      // zero before the first change
	Rejections  map[string]int // admission refusals by reason
}

// Stats snapshots the counters.
func (d *Discovery) Stats() Stats {
	st := Stats{
		PushPulls:   d.stats.pushPulls.Load(),
		Probes:      d.stats.probes.Load(),
		Revocations: d.revs.Len(),
		Rejections:  d.Rejections(),
	}
	if ns := d.stats.lastChange.Load(); ns != 0 {
		st.LastChange = time.Unix(0, ns)
	}
	return st
}

// memberlist.PingDelegate: counts completed probes. No payload rides on
// the acks.
var _ memberlist.PingDelegate = (*delegate)(nil)

func (g *delegate) AckPayload() []byte { return nil }

func (g *delegate) NotifyPingComplete(*memberlist.Node, time.Duration, []byte) {
	g.d().stats.probes.Add(1)
}
