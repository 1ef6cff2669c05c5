package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// The nats phase: the load generator (natsload.go) between node1 and node2
// through meshnode's embedded servers over the overlay, against the same
// server setup routed over the underlay (underlay.go).

// natsSizes are the payload sizes of every NATS run.
var natsSizes = []int{16, 1024, 64 << 10}

func sizeName(n int) string {
	switch {
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// natsBench compares NATS between node1 (publisher/requester) and node2
// (subscriber/responder) through meshnode's embedded servers over the
// overlay with the same embedded server setup routed over the underlay.
func natsBench(ctx context.Context, s *settings, r *Report, l *benchLab) error {
	const clientPort, routePort = 14222, 16222
	var nodeArgs []string
	for _, n := range l.Nodes {
		nodeArgs = append(nodeArgs, "--node", n.State+"="+n.IP)
	}
	var logs []string
	var underPIDs, overPIDs []int
	for _, n := range l.Nodes {
		overPIDs = append(overPIDs, n.PID())
	}
	// cpuTicks sums utime+stime of the servers of one path: the daemons
	// (NATS + WireGuard + gossip) or the underlay NATS servers.
	cpuTicks := func(pids []int) int64 {
		var t int64
		for _, pid := range pids {
			if _, x, err := procSample(pid); err == nil {
				t += x
			}
		}
		return t
	}
	tck := clkTck()
	for i, n := range l.Nodes {
		store, err := os.MkdirTemp(l.dir, "underlay-js-")
		if err != nil {
			return err
		}
		args := append([]string{"underlay-nats", "--self", n.State, "--store", store,
			"--client-port", strconv.Itoa(clientPort), "--route-port", strconv.Itoa(routePort)}, nodeArgs...)
		c, lp, err := l.Nodes[i].Spawn(s.self, args...)
		if err != nil {
			return err
		}
		logs = append(logs, lp)
		underPIDs = append(underPIDs, c.Process.Pid)
	}
	for _, lp := range logs {
		if err := waitFor(ctx, 30*time.Second, "underlay NATS server ("+lp+")", func() bool {
			b, _ := os.ReadFile(lp)
			return bytes.Contains(b, []byte("ready\n"))
		}); err != nil {
			b, _ := os.ReadFile(lp)
			return fmt.Errorf("%w: %s", err, b)
		}
	}
	end := func(i int, overlay bool) natsEnd {
		n := l.Nodes[i]
		e := natsEnd{ns: n.NS.Name, serverName: n.Addr, state: identity.StateDir(n.State)}
		if overlay {
			e.url = fmt.Sprintf("tls://[%s]:4222", n.Addr)
		} else {
			e.url = fmt.Sprintf("tls://%s:%d", n.IP, clientPort)
		}
		return e
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	to := min(1, len(l.Nodes)-1) // 0 only in the one-node dry run
	over, err := openPair(end(0, true), end(to, true))
	if err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	defer over.Close()
	under, err := openPair(end(0, false), end(to, false))
	if err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	defer under.Close()
	if err := over.waitInterest(pctx); err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	if err := under.waitInterest(pctx); err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	type acc struct{ rate, p50, p99, cpu []float64 }
	res := map[string]*acc{}
	key := func(path string, size int) string { return path + " " + sizeName(size) }
	for run := 0; run < s.natsRuns; run++ {
		for _, size := range natsSizes {
			paths := []string{"overlay", "underlay"}
			if run%2 == 1 {
				paths = []string{"underlay", "overlay"}
			}
			for _, path := range paths {
				p, pids := over, overPIDs
				if path == "underlay" {
					p, pids = under, underPIDs
				}
				rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				t0 := cpuTicks(pids)
				tp, err := p.throughput(rctx, size, s.natsMsgs, s.natsTime)
				// Server-side CPU per delivered MB (the throughput run only).
				cpuMsPerMB := float64(cpuTicks(pids)-t0) / tck * 1000 / (float64(tp.Msgs) * float64(size) / 1e6)
				if err != nil {
					cancel()
					return fmt.Errorf("%s %s throughput: %w", path, sizeName(size), err)
				}
				p50, p99, n, err := p.latency(rctx, size, s.latCount, s.natsTime)
				cancel()
				if err != nil {
					return fmt.Errorf("%s %s latency: %w", path, sizeName(size), err)
				}
				k := key(path, size)
				if res[k] == nil {
					res[k] = &acc{}
				}
				a := res[k]
				a.rate = append(a.rate, tp.perSec())
				a.p50 = append(a.p50, p50)
				a.p99 = append(a.p99, p99)
				a.cpu = append(a.cpu, cpuMsPerMB)
				logf("  nats run %d %-18s %9.0f msg/s (%d msgs)  rtt p50 %6.0f µs  p99 %6.0f µs (%d)", run+1, k, tp.perSec(), tp.Msgs, p50, p99, n)
			}
		}
	}
	const g = "nats"
	for _, size := range natsSizes {
		o, u := res[key("overlay", size)], res[key("underlay", size)]
		sz := sizeName(size)
		fo := r.add(fig(g, "msgs/s overlay "+sz, "msg/s", o.rate))
		fu := r.add(fig(g, "msgs/s underlay "+sz, "msg/s", u.rate))
		r.add(ratio(g, "msgs/s overlay/underlay "+sz, fo, fu)).goalAtLeast(0.9, "≥ 0.9")
		lo := r.add(fig(g, "rtt p50 overlay "+sz, "µs", o.p50))
		lu := r.add(fig(g, "rtt p50 underlay "+sz, "µs", u.p50))
		r.add(ratio(g, "rtt p50 underlay/overlay "+sz, lu, lo)).goalAtLeast(0.8, "≥ 0.8 (overlay ≤ 1.25× underlay)")
		r.add(fig(g, "rtt p99 overlay "+sz, "µs", o.p99))
		r.add(fig(g, "rtt p99 underlay "+sz, "µs", u.p99))
		co := r.add(fig(g, "server CPU per MB delivered, overlay "+sz, "CPU ms/MB", o.cpu))
		co.Note = "utime+stime of the 3 meshnode daemons (NATS + WireGuard + gossip) during the throughput run"
		cu := r.add(fig(g, "server CPU per MB delivered, underlay "+sz, "CPU ms/MB", u.cpu))
		cu.Note = "utime+stime of the 3 underlay NATS servers during the throughput run"
		r.add(ratio(g, "server CPU per MB overlay/underlay "+sz, co, cu))
	}
	return nil
}
