package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/scripts/netns"
)

// ---- cost ----

// procSample reads VmRSS (bytes) and utime+stime (clock ticks) of pid.
func procSample(pid int) (rss int64, ticks int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb * 1024
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime 14, stime 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return rss, ut + st, nil
}

func clkTck() float64 {
	if v, err := strconv.Atoi(sh("getconf", "CLK_TCK")); err == nil && v > 0 {
		return float64(v)
	}
	return 100
}

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
	tck := clkTck()
	type series struct {
		rss   []float64
		cpu   []float64
		ticks int64
		at    time.Time
	}
	ser := make([]series, len(l.Nodes))
	for i, n := range l.Nodes {
		_, t, err := procSample(n.PID())
		if err != nil {
			return err
		}
		ser[i].ticks, ser[i].at = t, time.Now()
	}
	end := time.Now().Add(s.idle)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	sec := 0
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		sec++
		for i, n := range l.Nodes {
			rss, t, err := procSample(n.PID())
			if err != nil {
				return err
			}
			ser[i].rss = append(ser[i].rss, float64(rss)/(1<<20))
			if sec%10 == 0 || !time.Now().Before(end) {
				now := time.Now()
				ser[i].cpu = append(ser[i].cpu, 100*float64(t-ser[i].ticks)/tck/now.Sub(ser[i].at).Seconds())
				ser[i].ticks, ser[i].at = t, now
			}
		}
	}
	if os.Getenv("PROFILE") == "1" {
		syscall.Kill(l.Nodes[0].PID(), syscall.SIGUSR1)
		time.Sleep(time.Second)
		logf("heap profile of node1: %s-*.heap.pprof", l.Nodes[0].State)
	}
	const g = "cost"
	first := ser[0].rss[:min(60, len(ser[0].rss))]
	r.add(fig(g, "idle RSS node1 (JetStream on, 3-node mesh), first 60 s, 1 s samples", "MiB", first)).goalBelow(40, "< 40 MiB")
	if n := len(ser[0].rss); n >= 90 {
		// The Go heap grows between idle GCs (every 1-2 minutes at idle):
		// the tail of a longer window is the steady state.
		f := r.add(fig(g, fmt.Sprintf("idle RSS node1, last 30 s of %d s", n), "MiB", ser[0].rss[n-30:])).goalBelow(40, "< 40 MiB")
		f.Note = "steady state: RSS climbs until the first idle GC"
	}
	r.add(fig(g, "idle CPU node1, 10 s windows", "% of one core", ser[0].cpu))
	var med []float64
	var cpuAll []float64
	for i := range ser {
		med = append(med, fig("", "", "", ser[i].rss).Median)
		cpuAll = append(cpuAll, fig("", "", "", ser[i].cpu).Median)
	}
	r.add(fig(g, "idle RSS, median of each of the 3 nodes", "MiB", med)).goalBelow(40, "< 40 MiB")
	var hwm []float64
	for _, n := range l.Nodes {
		hwm = append(hwm, vmKiB(n.PID(), "VmHWM")/1024)
	}
	r.add(fig(g, "peak RSS since start (VmHWM), each of the 3 nodes", "MiB", hwm))
	r.add(fig(g, "idle CPU, median of each of the 3 nodes", "% of one core", cpuAll))
	return nil
}

// ---- throughput inside the lab ----

func iperf(ctx context.Context, l *benchLab, from int, dst string, secs int) (float64, error) {
	cmd := l.Nodes[from].NS.Command("iperf3", "-c", dst, "-t", strconv.Itoa(secs), "-J")
	out, err := cmd.Output()
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil || res.Error != "" || err != nil {
		return 0, fmt.Errorf("iperf3 to %s: %v %v %s", dst, err, jerr, res.Error)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

// offloads reads ethtool -k of iface in node i's namespace and keeps the
// offload features that matter for a TUN/veth data path.
func offloads(l *benchLab, i int, iface string) string {
	out, err := l.Nodes[i].NS.Run("ethtool", "-k", iface)
	if err != nil {
		return "ethtool failed: " + strings.TrimSpace(out)
	}
	want := []string{"tx-checksumming", "scatter-gather", "tcp-segmentation-offload", "tx-tcp6-segmentation", "tx-udp-segmentation", "generic-segmentation-offload", "generic-receive-offload", "rx-gro-list", "rx-udp-gro-forwarding"}
	var parts []string
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		for _, w := range want {
			if k == w {
				parts = append(parts, k+"="+strings.Fields(v)[0])
			}
		}
	}
	return strings.Join(parts, " ")
}

// labThroughput measures, between node1 and node2 of the running mesh and
// interleaved run by run: the bridge underlay, a bare wireguard-go pair
// (wgbare, configured with wg, on another port) and the full meshnode
// overlay (the daemons' own interfaces).
// wgPair is a bare WireGuard pair between node1 and node2 of the lab,
// outside meshnode, configured with wg and ip like any wg user would.
type wgPair struct {
	ifaces [2]string
	pids   [2]int
	dst    string // node2's address on the pair
}

// startWGPair starts cmd IFACE (wgbare) in node1's and node2's
// namespaces and configures them as peers on port with addresses in
// net::1 and net::2.
func startWGPair(ctx context.Context, l *benchLab, keyDir string, pubs [2]string, cmd []string, port, net string) (*wgPair, error) {
	p := &wgPair{ifaces: [2]string{netns.Unique("wb"), netns.Unique("wb")}, dst: net + "2"}
	peersIP := []string{l.Nodes[1].IP, l.Nodes[0].IP}
	for i := range 2 {
		args := append(append([]string{}, cmd[1:]...), p.ifaces[i])
		c, _, err := l.startProc(i, cmd[0], args...)
		if err != nil {
			return nil, err
		}
		p.pids[i] = c.Process.Pid
	}
	for i := range 2 {
		iface := p.ifaces[i]
		if err := waitFor(ctx, 10*time.Second, cmd[0]+" "+iface, func() bool {
			return exec.Command("wg", "show", iface).Run() == nil
		}); err != nil {
			return nil, err
		}
		ns := l.Nodes[i].NS
		steps := [][]string{
			{"wg", "set", iface, "private-key", filepath.Join(keyDir, fmt.Sprintf("%d.key", i)), "listen-port", port,
				"peer", pubs[1-i], "endpoint", peersIP[i] + ":" + port, "allowed-ips", fmt.Sprintf("%s%d/128", net, 2-i)},
			{"ip", "addr", "add", fmt.Sprintf("%s%d/48", net, i+1), "dev", iface, "nodad"},
			{"ip", "link", "set", iface, "up"},
		}
		for _, st := range steps {
			if out, err := ns.Run(st[0], st[1:]...); err != nil {
				return nil, fmt.Errorf("%v: %w: %s", st, err, out)
			}
		}
	}
	if err := waitFor(ctx, 20*time.Second, "ping "+p.dst, func() bool {
		return l.Nodes[0].NS.Command("ping", "-6", "-c1", "-W1", p.dst).Run() == nil
	}); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *wgPair) removeSockets() {
	for _, i := range p.ifaces {
		os.Remove("/var/run/wireguard/" + i + ".sock")
	}
}

// labThroughput measures, between node1 and node2 of the running mesh and
// interleaved run by run: the bridge underlay, a bare wireguard-go pair
// (wgbare, configured with wg, on another port) and the full meshnode
// overlay (the daemons' own interfaces).
func labThroughput(ctx context.Context, s *settings, r *Report, l *benchLab) error {
	if s.wgbare == "" {
		return fmt.Errorf("no --wgbare binary")
	}
	a, b := l.Nodes[0], l.Nodes[1]
	keyDir, err := os.MkdirTemp(l.dir, "keys-")
	if err != nil {
		return err
	}
	var pubs [2]string
	for i := range 2 {
		k, err := exec.Command("wg", "genkey").Output()
		if err != nil {
			return fmt.Errorf("wg genkey: %w", err)
		}
		kf := filepath.Join(keyDir, fmt.Sprintf("%d.key", i))
		if err := os.WriteFile(kf, k, 0o600); err != nil {
			return err
		}
		pc := exec.Command("wg", "pubkey")
		pc.Stdin = bytes.NewReader(k)
		p, err := pc.Output()
		if err != nil {
			return err
		}
		pubs[i] = strings.TrimSpace(string(p))
	}
	bare, err := startWGPair(ctx, l, keyDir, pubs, []string{s.wgbare}, "51830", "fd77:6b:3::")
	if bare != nil {
		defer bare.removeSockets()
	}
	if err != nil {
		return err
	}
	bareA := bare.ifaces[0]
	if _, _, err := l.startProc(1, "iperf3", "-s"); err != nil {
		return err
	}
	bareDst, overlayDst, underDst := bare.dst, l.addrs[1], b.IP
	for _, d := range []string{overlayDst} {
		if err := waitFor(ctx, 20*time.Second, "ping "+d, func() bool {
			return a.NS.Command("ping", "-6", "-c1", "-W1", d).Run() == nil
		}); err != nil {
			return err
		}
	}
	if err := waitFor(ctx, 10*time.Second, "iperf3 server", func() bool {
		out, _ := b.NS.Run("ss", "-ltn")
		return strings.Contains(out, ":5201 ")
	}); err != nil {
		return err
	}
	r.Checks["offloads: meshnode TUN (node1 "+a.Iface+")"] = offloads(l, 0, a.Iface)
	r.Checks["offloads: bare wireguard-go TUN (node1)"] = offloads(l, 0, bareA)
	r.Checks["offloads: underlay veth (node1 eth0)"] = offloads(l, 0, "eth0")
	r.Checks["mtu: meshnode / bare wireguard-go"] = strings.TrimSpace(sh("sh", "-c", fmt.Sprintf("ip netns exec %s cat /sys/class/net/%s/mtu /sys/class/net/%s/mtu | paste -sd/", a.NS.Name, a.Iface, bareA)))

	var u, bw, ov []float64
	for i := 0; i < s.runs; i++ {
		v, err := iperf(ctx, l, 0, underDst, s.duration)
		if err != nil {
			return err
		}
		u = append(u, v)
		order := []string{bareDst, overlayDst}
		if i%2 == 1 {
			order = []string{overlayDst, bareDst}
		}
		for _, d := range order {
			v, err := iperf(ctx, l, 0, d, s.duration)
			if err != nil {
				return err
			}
			if d == bareDst {
				bw = append(bw, v)
			} else {
				ov = append(ov, v)
			}
		}
		logf("  lab run %d: underlay %.3f  bare-wg %.3f  meshnode overlay %.3f Gbit/s", i+1, u[i], bw[i], ov[i])
	}
	const g = "throughput"
	fu := r.add(fig(g, "lab: underlay (bridge)", "Gbit/s", u))
	fb := r.add(fig(g, "lab: bare wireguard-go", "Gbit/s", bw))
	fo := r.add(fig(g, "lab: meshnode overlay (full node)", "Gbit/s", ov))
	r.add(ratio(g, "lab: meshnode overlay / bare wireguard-go", fo, fb)).goalAtLeast(1.0, "≥ 1.0")
	r.add(ratio(g, "lab: meshnode overlay / underlay", fo, fu))
	if s.tune {
		return tuneThroughput(ctx, s, r, l, bareDst)
	}
	return nil
}

// ---- NATS ----

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
		c, lp, err := l.startProc(i, s.self, args...)
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
		e := natsEnd{ns: n.NS.Name, serverName: l.addrs[i], state: identity.StateDir(n.State)}
		if overlay {
			e.url = fmt.Sprintf("tls://[%s]:4222", l.addrs[i])
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
		r.add(ratio(g, "msgs/s overlay/underlay "+sz, fo, fu)).goalAtLeast(0.8, "≥ 0.8")
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

// ---- failure detection ----

// failureDetection kills node3 with SIGKILL and times until every other
// node shows it not alive and has dropped its NATS route from the
// expected set; then restarts it and waits for a full mesh again.
func failureDetection(ctx context.Context, s *settings, r *Report, l *benchLab) error {
	victim := l.Nodes[len(l.Nodes)-1]
	survivors := l.Nodes[:len(l.Nodes)-1]
	wantRoutes := len(l.Nodes) - 2
	var all, firstDead []float64
	for run := 0; run < s.failRuns; run++ {
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err := l.WaitComplete(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("before run %d: %w", run+1, err)
		}
		t0 := time.Now()
		victim.Kill()
		dead := make([]time.Duration, len(survivors))
		done := make([]time.Duration, len(survivors))
		err = waitFor(ctx, 60*time.Second, victim.Name+" detected as failed", func() bool {
			ok := true
			for i, n := range survivors {
				if done[i] != 0 {
					continue
				}
				st := status(n)
				if st == nil {
					ok = false
					continue
				}
				gone := true
				for _, m := range st.Members {
					if m.Name == victim.Name && m.State == api.StateAlive {
						gone = false
					}
				}
				el := time.Since(t0)
				if gone && dead[i] == 0 {
					dead[i] = el
				}
				if gone && st.NATS.RoutesExpected == wantRoutes {
					done[i] = el
				} else {
					ok = false
				}
			}
			return ok
		})
		if err != nil {
			return fmt.Errorf("run %d: %w", run+1, err)
		}
		var worst, first time.Duration
		for i := range survivors {
			worst = max(worst, done[i])
			if first == 0 || dead[i] < first {
				first = dead[i]
			}
		}
		all = append(all, worst.Seconds())
		firstDead = append(firstDead, first.Seconds())
		logf("  failure run %d: every survivor dropped %s after %.2f s (first marked it not alive after %.2f s)", run+1, victim.Name, worst.Seconds(), first.Seconds())
		if err := victim.Up(); err != nil {
			return err
		}
		uctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err = victim.WaitUp(uctx)
		cancel()
		if err != nil {
			return err
		}
	}
	const g = "failure"
	r.add(fig(g, "kill -9 → every survivor: member not alive + NATS route dropped", "s", all)).goalBelow(6, "< 6 s")
	r.add(fig(g, "kill -9 → first survivor marks it not alive", "s", firstDead))
	return nil
}

// ---- time to mesh ----

func timeToMesh(ctx context.Context, s *settings, r *Report, first []meshTiming) error {
	ts := map[int][]meshTiming{3: first}
	for _, c := range []struct{ n, runs int }{{3, s.mesh3Runs - len(first)}, {8, s.mesh8Runs}} {
		for i := 0; i < c.runs && ctx.Err() == nil; i++ {
			err := withLab(ctx, s, c.n, func(_ *benchLab, t meshTiming) error {
				ts[c.n] = append(ts[c.n], t)
				return nil
			})
			if err != nil {
				return fmt.Errorf("%d-node mesh run %d: %w", c.n, i+1, err)
			}
		}
	}
	const g = "mesh"
	for _, n := range []int{3, 8} {
		var ping, comp []float64
		for _, t := range ts[n] {
			ping = append(ping, t.joinPing...)
			comp = append(comp, t.complete)
		}
		if len(comp) == 0 {
			continue
		}
		r.add(fig(g, fmt.Sprintf("%d nodes: join → first overlay ping (every joiner)", n), "s", ping))
		f := r.add(fig(g, fmt.Sprintf("%d nodes: last join started → full WireGuard + NATS route mesh", n), "s", comp))
		if n == 3 {
			f.goalBelow(3, "< 3 s")
		}
	}
	return nil
}

// ---- tuning experiment (TUNE=1) ----

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

// defaultTuneVariants are the Go runtime settings TUNE=1 tries; "defaults"
// runs the daemons with none, as a control after the others.
const defaultTuneVariants = "GOGC=400; GOMAXPROCS=1; GOGC=off GOMEMLIMIT=64MiB; defaults"

type tuneVariant struct {
	name string
	env  []string
}

// parseTuneVariants reads "K=V K=V; K=V; defaults": variants separated by
// semicolons, each a space-separated environment.
func parseTuneVariants(spec string) ([]tuneVariant, error) {
	if strings.TrimSpace(spec) == "" {
		spec = defaultTuneVariants
	}
	var out []tuneVariant
	for _, part := range strings.Split(spec, ";") {
		env := strings.Fields(part)
		if len(env) == 0 {
			continue
		}
		if len(env) == 1 && env[0] == "defaults" {
			out = append(out, tuneVariant{name: "defaults", env: nil})
			continue
		}
		for _, kv := range env {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return nil, fmt.Errorf("tune variant %q: %q is not KEY=VALUE", strings.TrimSpace(part), kv)
			}
		}
		out = append(out, tuneVariant{name: strings.Join(env, " "), env: env})
	}
	return out, nil
}

// tuneThroughput restarts node1 and node2 under different Go runtime
// settings and measures overlay throughput against the bare wireguard-go
// pair (still up from labThroughput), run by run, so each variant gets its
// own ratio. The daemons inherit this process's environment.
func tuneThroughput(ctx context.Context, s *settings, r *Report, l *benchLab, bareDst string) error {
	restart := func(env []string) error {
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
		defer func() {
			for _, kv := range env {
				k, _, _ := strings.Cut(kv, "=")
				os.Unsetenv(k)
			}
		}()
		for _, n := range l.Nodes[:2] {
			n.Stop(5 * time.Second)
			if err := n.Up(); err != nil {
				return err
			}
		}
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		return l.WaitComplete(wctx)
	}
	const g = "throughput"
	for _, v := range s.tuneVariants {
		if err := restart(v.env); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		var bw, ov []float64
		for i := 0; i < s.runs; i++ {
			order := []string{bareDst, l.addrs[1]}
			if i%2 == 1 {
				order = []string{l.addrs[1], bareDst}
			}
			for _, d := range order {
				x, err := iperf(ctx, l, 0, d, s.duration)
				if err != nil {
					return fmt.Errorf("%s: %w", v.name, err)
				}
				if d == bareDst {
					bw = append(bw, x)
				} else {
					ov = append(ov, x)
				}
			}
			logf("  tune %s run %d: bare-wg %.3f  meshnode overlay %.3f Gbit/s", v.name, i+1, bw[i], ov[i])
		}
		fb := fig(g, "tune "+v.name+": bare wireguard-go", "Gbit/s", bw)
		fo := r.add(fig(g, "tune "+v.name+": meshnode overlay", "Gbit/s", ov))
		r.add(ratio(g, "tune "+v.name+": overlay / bare wireguard-go", fo, fb))
	}
	return nil
}
