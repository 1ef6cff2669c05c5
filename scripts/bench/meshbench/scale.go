package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/scripts/meshlab"
)

// The scale phase (issue 15): a mesh of --scale-nodes real nodes, once with
// the default core (defaults.MaxCore core members, the rest leaf nodes) and
// once with every node core (`init --max-core N`: the full route mesh every
// mesh was before core members), so the report shows what leaf nodes save.
// Per layout: last join started → every node complete (meshlab
// WaitComplete), a message between two leaves (two non-admin nodes in the
// full mesh) and its request-reply round trip, idle RSS and CPU split core
// vs leaf, and the NATS connections per node.

// scaleLayout is one way to run the scale mesh.
type scaleLayout struct {
	key     string // figure name prefix
	maxCore int    // 0: meshnode's default
}

func scaleLayouts(n int) []scaleLayout {
	return []scaleLayout{
		{fmt.Sprintf("%d nodes, %d core + %d leaf", n, min(n, defaults.MaxCore), max(0, n-defaults.MaxCore)), 0},
		{fmt.Sprintf("%d nodes, all core (--max-core %d)", n, n), n},
	}
}

// scaleSamples are one layout's samples over every run. Per-node figures
// hold one sample per node and run.
type scaleSamples struct {
	complete, pass      []float64 // s
	deliver             []float64 // s, first message through SendAcross
	rttP50, rttP99      []float64 // µs
	coreRSS, leafRSS    []float64 // MiB, median of the last 10 s of idle
	coreHWM, leafHWM    []float64 // MiB, VmHWM after idle
	coreCPU, leafCPU    []float64 // % of one core, median of 10 s windows
	routeConns          []float64 // core: open route connections (status)
	routeTCP, leafTCP   []float64 // every node: established TCP on the route / leaf port (ss)
	coreLeaves, leafUps []float64 // leaf connections (status): on core members, on leaves
	metaSize            []float64 // JetStream meta group size as each core member reports it
	meshRoute, meshLeaf []float64 // per run: route / leaf TCP connections in the whole mesh, each counted once
	cores, leaves       int
}

// scaleBench runs the scale phase.
func scaleBench(ctx context.Context, s *settings, r *Report) error {
	if s.scaleNodes < 2 {
		return fmt.Errorf("--scale-nodes %d: want at least 2", s.scaleNodes)
	}
	layouts := scaleLayouts(s.scaleNodes)
	res := make([]scaleSamples, len(layouts))
	for run := 0; run < s.scaleRuns && ctx.Err() == nil; run++ {
		for i, lay := range layouts {
			logf("  scale run %d: %s", run+1, lay.key)
			err := withLabConfig(ctx, s, s.scaleNodes, func(l *meshlab.Lab) { l.MaxCore = lay.maxCore },
				func(l *benchLab, t meshTiming) error { return scaleRun(ctx, s, l, t, &res[i]) })
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", lay.key, run+1, err)
			}
		}
	}
	const g = "scale"
	n := s.scaleNodes
	for i, lay := range layouts {
		a := &res[i]
		k := lay.key + ": "
		r.add(fig(g, k+"last join started → every node healthy", "s", a.complete)).goalBelow(3, "< 3 s")
		r.add(fig(g, k+"one status pass over every node (resolution of the above)", "s", a.pass))
		pair := "leaf → leaf"
		if a.leaves < 2 {
			pair = "node → node (neither the admin)"
		}
		r.add(fig(g, k+"first message "+pair+" (meshnode nats sub/pub, processes included)", "s", a.deliver))
		r.add(fig(g, k+"request-reply "+pair+", 16 B, p50", "µs", a.rttP50))
		r.add(fig(g, k+"request-reply "+pair+", 16 B, p99", "µs", a.rttP99))
		if a.cores > 0 {
			r.add(fig(g, k+"idle RSS, core members (each)", "MiB", a.coreRSS)).goalBelow(32, "< 32 MiB")
			r.add(fig(g, k+"peak RSS (VmHWM), core members (each)", "MiB", a.coreHWM))
			r.add(fig(g, k+"idle CPU, core members (each)", "% of one core", a.coreCPU))
		}
		if a.leaves > 0 {
			r.add(fig(g, k+"idle RSS, leaf members (each)", "MiB", a.leafRSS)).goalBelow(32, "< 32 MiB")
			r.add(fig(g, k+"peak RSS (VmHWM), leaf members (each)", "MiB", a.leafHWM))
			r.add(fig(g, k+"idle CPU, leaf members (each)", "% of one core", a.leafCPU))
		}
		r.add(fig(g, k+"NATS route connections per core member (status)", "conns", a.routeConns))
		r.add(fig(g, k+fmt.Sprintf("established TCP on the route port %d per node (ss)", defaults.NATSRoutePort), "conns", a.routeTCP))
		r.add(fig(g, k+fmt.Sprintf("established TCP on the leaf port %d per node (ss)", defaults.NATSLeafPort), "conns", a.leafTCP))
		if a.leaves > 0 {
			r.add(fig(g, k+"leaf connections per core member (status)", "conns", a.coreLeaves))
			r.add(fig(g, k+"leaf connections per leaf member (status)", "conns", a.leafUps))
		}
		r.add(fig(g, k+"JetStream meta group size (each core member's view)", "servers", a.metaSize))
		r.add(fig(g, k+"route TCP connections in the whole mesh", "conns", a.meshRoute))
		r.add(fig(g, k+"leaf TCP connections in the whole mesh", "conns", a.meshLeaf))
	}
	if len(res) == 2 {
		leaf, full := layouts[0].key, layouts[1].key
		cmp := func(name, unit string, a, b []float64) {
			fa, fb := fig("", "", "", a), fig("", "", "", b)
			if fa.N == 0 || fb.N == 0 || fb.Median == 0 {
				return
			}
			f := r.add(fig(g, fmt.Sprintf("%d nodes, core+leaf / all core: %s", n, name), unit, []float64{fa.Median / fb.Median}))
			f.Note = "ratio of the medians of \"" + leaf + "\" and \"" + full + "\""
		}
		cmp("last join → healthy", "ratio", res[0].complete, res[1].complete)
		cmp("idle RSS, every node", "ratio", append(slices.Clone(res[0].coreRSS), res[0].leafRSS...), res[1].coreRSS)
		cmp("idle CPU, every node", "ratio", append(slices.Clone(res[0].coreCPU), res[0].leafCPU...), res[1].coreCPU)
		cmp("established route + leaf TCP per node", "ratio", addEach(res[0].routeTCP, res[0].leafTCP), addEach(res[1].routeTCP, res[1].leafTCP))
		cmp("route + leaf TCP connections in the whole mesh", "ratio", addEach(res[0].meshRoute, res[0].meshLeaf), addEach(res[1].meshRoute, res[1].meshLeaf))
	}
	return nil
}

func addEach(a, b []float64) []float64 {
	out := slices.Clone(a)
	for i := range out {
		if i < len(b) {
			out[i] += b[i]
		}
	}
	return out
}

// scaleRun measures one running scale mesh into a.
func scaleRun(ctx context.Context, s *settings, l *benchLab, t meshTiming, a *scaleSamples) error {
	a.complete = append(a.complete, t.complete)
	// One more WaitComplete on the complete mesh is one pass of status
	// calls over every node: how finely "every node healthy" is seen.
	p0 := time.Now()
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err := l.WaitComplete(pctx)
	cancel()
	if err != nil {
		return err
	}
	a.pass = append(a.pass, time.Since(p0).Seconds())

	var cores, leaves []*meshlab.Node
	sts := map[*meshlab.Node]*api.Status{}
	for _, n := range l.Nodes {
		st, err := n.Status()
		if err != nil {
			return err
		}
		sts[n] = st
		if st.NATS.Role == api.NATSRoleLeaf {
			leaves = append(leaves, n)
		} else {
			cores = append(cores, n)
		}
	}
	a.cores, a.leaves = len(cores), len(leaves)
	logf("  %d core members, %d leaf members", len(cores), len(leaves))

	// JetStream up on every core member (meta leader elected) before
	// anything is called idle.
	var js string
	if err := waitFor(ctx, 120*time.Second, "JetStream meta leader on every core member", func() bool {
		for _, n := range cores {
			st := status(n)
			if st == nil {
				js = n.Name + ": no status"
				return false
			}
			if js = n.Name + ": " + st.NATS.JetStream; !strings.HasPrefix(st.NATS.JetStream, "ok") {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("%w (%s)", err, js)
	}

	// Leaf → leaf, across two core members when the leaves' connections
	// allow; in the full mesh the last two nodes (neither is the admin).
	from, to := l.Nodes[len(l.Nodes)-2], l.Nodes[len(l.Nodes)-1]
	if len(leaves) >= 2 {
		from, to = leaves[0], leaves[1]
		for _, b := range leaves[1:] {
			if sts[b].NATS.LeafOf != sts[from].NATS.LeafOf {
				to = b
				break
			}
		}
	}
	if len(leaves) >= 2 {
		logf("  message %s (leaf of %s) → %s (leaf of %s)", from.Name, sts[from].NATS.LeafOf, to.Name, sts[to].NATS.LeafOf)
	} else {
		logf("  message %s → %s", from.Name, to.Name)
	}
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	m0 := time.Now()
	out, err := l.SendAcross(mctx, from, to, "bench.scale", "hello from "+from.Name)
	cancel()
	if err != nil {
		return err
	}
	if !strings.Contains(out, "hello from "+from.Name) {
		return fmt.Errorf("%s received %q, not %s's message", to.Name, out, from.Name)
	}
	a.deliver = append(a.deliver, time.Since(m0).Seconds())
	end := func(n *meshlab.Node) natsEnd {
		return natsEnd{ns: n.NS.Name, serverName: n.Addr, state: identity.StateDir(n.State),
			url: fmt.Sprintf("tls://[%s]:%d", n.Addr, defaults.NATSClientPort)}
	}
	p, err := openPair(end(from), end(to))
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := p.waitInterest(rctx); err != nil {
		p.Close()
		return err
	}
	p50, p99, cnt, err := p.latency(rctx, 16, 500, 5*time.Second)
	p.Close()
	if err != nil {
		return err
	}
	logf("  request-reply %s → %s: p50 %.0f µs, p99 %.0f µs (%d round trips)", from.Name, to.Name, p50, p99, cnt)
	a.rttP50, a.rttP99 = append(a.rttP50, p50), append(a.rttP99, p99)

	// Idle: settle, then sample every node.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
	}
	logf("  sampling idle RSS and CPU of %d nodes for %s", len(l.Nodes), s.scaleIdle)
	var pids []int
	for _, n := range l.Nodes {
		pids = append(pids, n.PID())
	}
	ser, err := sampleProcs(ctx, pids, s.scaleIdle)
	if err != nil {
		return err
	}
	for i, n := range l.Nodes {
		rss := ser[i].rss[max(0, len(ser[i].rss)-10):]
		r, c := fig("", "", "", rss).Median, fig("", "", "", ser[i].cpu).Median
		hwm := vmKiB(n.PID(), "VmHWM") / 1024
		if sts[n].NATS.Role == api.NATSRoleLeaf {
			a.leafRSS, a.leafCPU, a.leafHWM = append(a.leafRSS, r), append(a.leafCPU, c), append(a.leafHWM, hwm)
		} else {
			a.coreRSS, a.coreCPU, a.coreHWM = append(a.coreRSS, r), append(a.coreCPU, c), append(a.coreHWM, hwm)
		}
	}

	// Connections, read after the idle period (nothing is still forming).
	var meshRoute, meshLeaf int
	for _, n := range l.Nodes {
		st, err := n.Status()
		if err != nil {
			return err
		}
		route, leaf, err := establishedOn(n, defaults.NATSRoutePort, defaults.NATSLeafPort)
		if err != nil {
			return err
		}
		a.routeTCP, a.leafTCP = append(a.routeTCP, float64(route)), append(a.leafTCP, float64(leaf))
		meshRoute, meshLeaf = meshRoute+route, meshLeaf+leaf
		if st.NATS.Role == api.NATSRoleLeaf {
			a.leafUps = append(a.leafUps, float64(st.NATS.Leaves))
			continue
		}
		a.routeConns = append(a.routeConns, float64(len(st.NATS.Routes)))
		a.coreLeaves = append(a.coreLeaves, float64(st.NATS.Leaves))
		if size, ok := metaGroupSize(st.NATS.JetStream); ok {
			a.metaSize = append(a.metaSize, float64(size))
		} else {
			logf("  %s: JetStream %q names no meta group size", n.Name, st.NATS.JetStream)
		}
	}
	// Both ends of a connection are in the lab: each was counted twice.
	a.meshRoute, a.meshLeaf = append(a.meshRoute, float64(meshRoute)/2), append(a.meshLeaf, float64(meshLeaf)/2)
	return nil
}

// metaGroupSize reads the meta group size from status's JetStream line
// ("ok, meta leader NAME, N servers").
func metaGroupSize(js string) (int, bool) {
	f := strings.Fields(js)
	if len(f) < 2 || !strings.HasPrefix(js, "ok, meta leader ") || f[len(f)-1] != "servers" {
		return 0, false
	}
	v, err := strconv.Atoi(f[len(f)-2])
	return v, err == nil
}

// establishedOn counts the node's established TCP connections with one end
// on each port (ss inside its namespace): both directions of every route or
// leaf connection the node is part of.
func establishedOn(n *meshlab.Node, ports ...int) (route, leaf int, err error) {
	out, err := n.NS.Command("ss", "-Htn", "state", "established").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("%s: ss: %w", n.Name, err)
	}
	counts := countOnPorts(string(out), ports...)
	return counts[0], counts[1], nil
}

// countOnPorts counts the lines of `ss -Htn state established` whose local
// or peer address ends in each port.
func countOnPorts(ssOut string, ports ...int) []int {
	counts := make([]int, len(ports))
	for _, line := range strings.Split(ssOut, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		// Recv-Q Send-Q Local:Port Peer:Port (the state column is left
		// out under a state filter).
		local, peer := f[2], f[3]
		for i, p := range ports {
			suffix := ":" + strconv.Itoa(p)
			if strings.HasSuffix(local, suffix) || strings.HasSuffix(peer, suffix) {
				counts[i]++
			}
		}
	}
	return counts
}
