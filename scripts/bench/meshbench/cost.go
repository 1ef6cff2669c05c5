package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The cost phase: idle RSS and CPU of the nodes of a 3-node mesh with
// JetStream on (and, in runBench, the size of the static binary).

// idleCost samples every node of the idle 3-node mesh (JetStream on) once
// a second: RSS, and CPU% per 10 s window.
func idleCost(ctx context.Context, s *settings, r *Report, l *benchLab) error {
	// JetStream must be running (meta leader elected) for "JetStream on".
	var js string
	if err := waitFor(ctx, 60*time.Second, "JetStream meta leader on every node", func() bool {
		for _, n := range l.Nodes {
			st := status(n)
			if st == nil {
				js = n.Name + ": no status"
				return false
			}
			// (A one-node dry run never elects a meta leader.)
			if js = n.Name + ": " + st.NATS.JetStream; !strings.HasPrefix(st.NATS.JetStream, "ok") && len(l.Nodes) > 1 {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("%w (%s)", err, js)
	}
	if st := status(l.Nodes[0]); st != nil {
		r.Checks["jetstream (idle mesh)"] = st.NATS.JetStream
	}
	// Let start-up work (elections, first gossip rounds) settle.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
	}
	logf("sampling idle RSS and CPU of %d nodes for %s", len(l.Nodes), s.idle)
	var pids []int
	for _, n := range l.Nodes {
		pids = append(pids, n.PID())
	}
	ser, err := sampleProcs(ctx, pids, s.idle)
	if err != nil {
		return err
	}
	if os.Getenv("PROFILE") == "1" {
		syscall.Kill(l.Nodes[0].PID(), syscall.SIGUSR1)
		time.Sleep(time.Second)
		logf("heap profile of node1: %s-*.heap.pprof", l.Nodes[0].State)
	}
	const g = "cost"
	first := ser[0].rss[:min(60, len(ser[0].rss))]
	r.add(fig(g, "idle RSS node1 (JetStream on, 3-node mesh), first 60 s, 1 s samples", "MiB", first)).goalBelow(32, "< 32 MiB")
	if n := len(ser[0].rss); n >= 90 {
		// The Go heap grows between idle GCs (every 1-2 minutes at idle):
		// the tail of a longer window is the steady state.
		f := r.add(fig(g, fmt.Sprintf("idle RSS node1, last 30 s of %d s", n), "MiB", ser[0].rss[n-30:])).goalBelow(32, "< 32 MiB")
		f.Note = "steady state: RSS climbs until the first idle GC"
	}
	r.add(fig(g, "idle CPU node1, 10 s windows", "% of one core", ser[0].cpu))
	var med []float64
	var cpuAll []float64
	for i := range ser {
		med = append(med, fig("", "", "", ser[i].rss).Median)
		cpuAll = append(cpuAll, fig("", "", "", ser[i].cpu).Median)
	}
	r.add(fig(g, "idle RSS, median of each of the 3 nodes", "MiB", med)).goalBelow(32, "< 32 MiB")
	var hwm []float64
	for _, n := range l.Nodes {
		hwm = append(hwm, vmKiB(n.PID(), "VmHWM")/1024)
	}
	r.add(fig(g, "peak RSS since start (VmHWM), each of the 3 nodes", "MiB", hwm))
	r.add(fig(g, "idle CPU, median of each of the 3 nodes", "% of one core", cpuAll))
	return nil
}

// vmKiB reads a Vm* field (kB) of /proc/PID/status.
func vmKiB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			v, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return v
		}
	}
	return 0
}
