// Command gossipsim runs a whole mesh's gossip in one process: N members
// with real identities, CA-signed tickets and signed meta, sealed with the
// mesh gossip key, each a real discovery.Discovery with the shipped LAN
// timers, over the in-memory network of discovery/memtransport (latency,
// jitter, loss). It prints, beside the goals:
//
//   - convergence: time until every member sees every other alive, from
//     the first and from the last join start;
//   - failure detection: time until the survivors see a killed member
//     dead (median and max across survivors);
//   - steady state: gossip bytes/s per member sent and received (mean,
//     max), process CPU seconds per member-second, heap per member.
//
// Run from the repository root (no root needed):
//
//	go run ./scripts/bench/gossipsim                       # 1,000 members, 0% and 1% loss
//	go run ./scripts/bench/gossipsim -members 100 -loss 0
//	go run ./scripts/bench/gossipsim -cpuprofile out/gossipsim.pprof
//
// All N members share this machine's cores, so every member's CPU work
// (signature checks, compression, sealing) competes with the others': a
// real member has a box of its own. The figures say where the time goes;
// nothing here passes or fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/discovery/memtransport"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/identity/identitytest"
)

func main() {
	members := flag.Int("members", 1000, "simulated members")
	latency := flag.Duration("latency", time.Millisecond, "one-way latency")
	jitter := flag.Duration("jitter", 500*time.Microsecond, "latency jitter (uniform ±)")
	losses := flag.String("loss", "0,0.01", "packet loss rates to run, comma-separated")
	parallel := flag.Int("join-parallel", 8, "joins in flight at once")
	joinCPU := flag.Float64("join-cpu", 0.6, "start the next join only while the process uses less than this share of its CPUs (0: no pacing)")
	steady := flag.Duration("steady", 30*time.Second, "steady-state window for bytes/s and CPU (the push/pull interval at 1,000 members is 30 s)")
	settle := flag.Duration("settle", 2*time.Minute, "longest wait after convergence for the broadcast queues to drain before the steady window")
	timeout := flag.Duration("timeout", 3*time.Minute, "give up on a phase (joining, converging, detecting the kill) after this long")
	seed := flag.Uint64("seed", 1, "seed of loss, jitter and the killed member")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	verbose := flag.Bool("v", false, "log discovery warnings to stderr")
	flag.Parse()

	if err := run(*members, *latency, *jitter, *losses, *parallel, *joinCPU, *steady, *settle, *timeout, *seed, *cpuprofile, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "gossipsim:", err)
		os.Exit(1)
	}
}

func run(n int, latency, jitter time.Duration, losses string, parallel int, joinCPU float64, steady, settle, timeout time.Duration, seed uint64, cpuprofile string, verbose bool) error {
	if n < 3 {
		return errors.New("-members: at least 3")
	}
	var rates []float64
	for _, s := range strings.Split(losses, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || r < 0 || r >= 1 {
			return fmt.Errorf("-loss %q: want rates in [0, 1)", s)
		}
		rates = append(rates, r)
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
		// An interrupted run still leaves its profile.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sig
			pprof.StopCPUProfile()
			f.Close()
			progress("interrupted: CPU profile written to %s", cpuprofile)
			os.Exit(1)
		}()
	}

	start := time.Now()
	mesh, err := identitytest.MakeMesh("gossipsim")
	if err != nil {
		return err
	}
	fleet, err := mesh.Fleet(n, "m")
	if err != nil {
		return err
	}
	progress("%d members enrolled in %s (identities, tickets, node certificates)", n, since(start))

	var results []*result
	for _, loss := range rates {
		r := simulate(fleet, simConfig{latency: latency, jitter: jitter, loss: loss, parallel: parallel, joinCPU: joinCPU, steady: steady, settle: settle, timeout: timeout, seed: seed, verbose: verbose})
		if r.err != nil {
			progress("loss %.1f%%: %v", 100*loss, r.err)
		}
		results = append(results, r)
	}
	printTable(os.Stdout, n, latency, jitter, results)
	return nil
}

type simConfig struct {
	latency, jitter time.Duration
	loss            float64
	parallel        int
	joinCPU         float64
	steady, timeout time.Duration
	settle          time.Duration
	seed            uint64
	verbose         bool
}

type node struct {
	name string
	addr netip.AddrPort
	d    *discovery.Discovery
}

// result is one run's figures.
type result struct {
	// err ends a run early (a phase did not finish within -timeout); the
	// figures before it are kept.
	err                       error
	phase                     string // the last phase finished
	converged                 int    // members that saw everyone
	joined                    int    // members that started their join
	loss                      float64
	fromFirst, fromLast       time.Duration // the last member's convergence
	settle                    time.Duration // convergence to a drained broadcast queue
	memberMedian              time.Duration // a member's convergence from its own join start, median
	joinSpan                  time.Duration // first to last join start
	deadMedian, deadMax       time.Duration
	sentMean, sentMax         float64 // bytes/s per member
	recvMean, recvMax         float64
	pktSent                   float64 // packets/s per member
	cpuPerMemberSecond        float64 // CPU seconds per member-second
	heapPerMember             float64 // bytes
	lost, dropped, overflowed uint64
}

func simulate(fleet []*identity.Member, cfg simConfig) *result {
	res := &result{loss: cfg.loss}
	res.err = res.simulate(fleet, cfg)
	return res
}

func (res *result) simulate(fleet []*identity.Member, cfg simConfig) error {
	n := len(fleet)
	net := memtransport.New(memtransport.Config{Latency: cfg.latency, Jitter: cfg.jitter, Loss: cfg.loss, Seed: cfg.seed})
	progress("loss %.1f%%: starting %d members (shipped LAN timers)", 100*cfg.loss, n)

	nodes := make([]*node, n)
	defer func() {
		var wg sync.WaitGroup
		for _, nd := range nodes {
			if nd != nil {
				wg.Add(1)
				go func() { defer wg.Done(); nd.d.Shutdown() }()
			}
		}
		wg.Wait()
	}()
	for i, m := range fleet {
		logger := slog.New(slog.DiscardHandler)
		if cfg.verbose {
			logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", m.Ticket.Name)
		}
		d, err := discovery.Start(context.Background(), discovery.Config{
			Member:         m,
			Transport:      net.NewTransport,
			Endpoints:      []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 51820)},
			NATSClientPort: 4222,
			NATSRoutePort:  6222,
			Logger:         logger,
		})
		if err != nil {
			return fmt.Errorf("%s: %w", m.Ticket.Name, err)
		}
		nodes[i] = &node{name: m.Ticket.Name, addr: netip.AddrPortFrom(m.Ticket.Addr, discovery.DefaultPort), d: d}
	}

	// Every member joins the first, as a fleet enrolled by one admin
	// node would, cfg.parallel at a time.
	joinStart := make([]time.Time, n)
	joinStart[0] = time.Now()
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		joinErrs int
		firstErr error
	)
	slots := make(chan struct{}, cfg.parallel)
	pace := newPacer(cfg.joinCPU)
	joinDeadline := time.Now().Add(cfg.timeout)
	for i := 1; i < n; i++ {
		slots <- struct{}{}
		pace.wait(joinDeadline)
		if time.Now().After(joinDeadline) {
			<-slots
			wg.Wait()
			res.joined = i
			return fmt.Errorf("only %d of %d members started their join within %s: the process stays busier than %.0f%% of its CPUs (-join-cpu) with %d members", i, n, cfg.timeout, 100*cfg.joinCPU, i)
		}
		joinStart[i] = time.Now()
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			if _, err := nodes[i].d.Join([]netip.AddrPort{nodes[0].addr}); err != nil {
				errMu.Lock()
				joinErrs++
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", nodes[i].name, err)
				}
				errMu.Unlock()
			}
		}()
		if i%100 == 0 {
			progress("  %d joins started", i)
		}
	}
	res.joined = n
	firstJoin, lastJoin := joinStart[1], joinStart[n-1]
	res.joinSpan = lastJoin.Sub(firstJoin)
	progress("  all joins started in %s (paced to %.0f%% of the CPUs)", round(res.joinSpan), 100*cfg.joinCPU)

	converged, err := waitConverged(nodes, cfg.timeout)
	wg.Wait()
	if joinErrs > 0 {
		progress("  %d joins failed (gossip brought those members in anyway), e.g. %v", joinErrs, firstErr)
	}
	for _, t := range converged {
		if !t.IsZero() {
			res.converged++
		}
	}
	if err != nil {
		return err
	}
	res.phase = "converged"
	last := slices.MaxFunc(converged, func(a, b time.Time) int { return a.Compare(b) })
	res.fromFirst, res.fromLast = last.Sub(firstJoin), last.Sub(lastJoin)
	own := make([]time.Duration, n)
	for i := range nodes {
		own[i] = converged[i].Sub(joinStart[i])
	}
	res.memberMedian = median(own)
	progress("  converged: %s after the first join started, %s after the last", round(res.fromFirst), round(res.fromLast))

	// Steady state: traffic and CPU over a window with nothing changing,
	// once the broadcast queues have drained (every member retransmits
	// every alive message 4 × log10 n times, ~3 per packet: minutes of
	// traffic at 1,000 members after the last join).
	settleStart := time.Now()
	for prev := counters(net, nodes); time.Since(settleStart) < cfg.settle; {
		time.Sleep(5 * time.Second)
		cur := counters(net, nodes)
		var pkts uint64
		for i := range cur {
			pkts += cur[i].PacketsSent - prev[i].PacketsSent
		}
		prev = cur
		rate := float64(pkts) / 5 / float64(n)
		if rate < settledPacketRate {
			break
		}
		progress("  settling: %.1f packets/s per member", rate)
	}
	res.settle = time.Since(settleStart)
	before := counters(net, nodes)
	cpu0, t0 := cpuTime(), time.Now()
	time.Sleep(cfg.steady)
	window, cpu := time.Since(t0).Seconds(), cpuTime()-cpu0
	after := counters(net, nodes)
	sent, recv := make([]float64, n), make([]float64, n)
	var pkts float64
	for i := range nodes {
		c := after[i].Sub(before[i])
		sent[i], recv[i] = float64(c.Sent())/window, float64(c.Received())/window
		pkts += float64(c.PacketsSent) / window
	}
	res.sentMean, res.sentMax = mean(sent), slices.Max(sent)
	res.recvMean, res.recvMax = mean(recv), slices.Max(recv)
	res.pktSent = pkts / float64(n)
	res.cpuPerMemberSecond = cpu.Seconds() / (float64(n) * window)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.heapPerMember = float64(ms.HeapAlloc) / float64(n)
	res.phase = "steady"
	progress("  steady state over %s: %.0f B/s sent per member, %.4f CPU s per member-second", round(time.Duration(window*float64(time.Second))), res.sentMean, res.cpuPerMemberSecond)

	// Kill one member (not the one everybody joined): its transport goes
	// silent, as a box that lost power.
	rng := rand.New(rand.NewPCG(cfg.seed, 15))
	victim := nodes[1+rng.IntN(n-1)]
	killedAt := time.Now()
	net.Kill(victim.addr.Addr())
	var survivors []*node
	for _, nd := range nodes {
		if nd != victim {
			survivors = append(survivors, nd)
		}
	}
	seen, err := waitDead(survivors, victim.name, cfg.timeout)
	if err != nil {
		return err
	}
	dead := make([]time.Duration, len(seen))
	for i, t := range seen {
		dead[i] = t.Sub(killedAt)
	}
	res.deadMedian, res.deadMax = median(dead), slices.Max(dead)
	progress("  killed %s: every survivor sees it dead after %s (median %s)", victim.name, round(res.deadMax), round(res.deadMedian))

	end := counters(net, nodes)
	for _, c := range end {
		res.lost += c.PacketsLost
		res.dropped += c.PacketsDropped
		res.overflowed += c.InboxOverflows
	}
	res.phase = "dead"
	return nil
}

// waitConverged polls until every member sees all n members alive and
// returns, per member, when it did: the latest LastChange among its
// entries, the moment its last member turned alive (exact, whatever the
// polling period). Members whose table changed in the last half second
// are not read (each read copies a table of n entries): they are still
// converging.
func waitConverged(nodes []*node, timeout time.Duration) ([]time.Time, error) {
	n := len(nodes)
	done := make([]time.Time, n)
	left := n
	deadline := time.Now().Add(timeout)
	for tick := 0; left > 0; tick++ {
		if time.Now().After(deadline) {
			worst, seen := "", n
			for i, nd := range nodes {
				if done[i].IsZero() {
					if a, _ := aliveView(nd.d); a < seen {
						worst, seen = nd.name, a
					}
				}
			}
			return done, fmt.Errorf("not converged within %s: %d members still miss someone, %s sees %d of %d alive", timeout, left, worst, seen, n)
		}
		time.Sleep(250 * time.Millisecond)
		for i, nd := range nodes {
			if !done[i].IsZero() {
				continue
			}
			if lc := nd.d.Stats().LastChange; time.Since(lc) < 500*time.Millisecond {
				continue
			}
			if alive, last := aliveView(nd.d); alive == n {
				done[i] = last
				left--
			}
		}
		if tick%20 == 0 {
			progress("  %d of %d members see everyone", n-left, n)
		}
	}
	return done, nil
}

// aliveView counts the alive members d sees (itself included) and the
// latest change among them.
func aliveView(d *discovery.Discovery) (int, time.Time) {
	alive, last := 0, time.Time{}
	for _, m := range d.Members() {
		if m.State == discovery.StateAlive {
			alive++
			if !m.Self && m.LastChange.After(last) {
				last = m.LastChange
			}
		}
	}
	return alive, last
}

// pacer holds joins back while the process is busier than a share of its
// CPUs: all members share this machine's cores, and a saturated process
// answers probes late, declares members dead that are not, and the rejoins
// that follow saturate it further. Real members each have a box.
type pacer struct {
	share    float64
	lastCPU  time.Duration
	lastWall time.Time
}

func newPacer(share float64) *pacer {
	return &pacer{share: share, lastCPU: cpuTime(), lastWall: time.Now()}
}

func (p *pacer) wait(deadline time.Time) {
	if p.share <= 0 {
		return
	}
	for time.Now().Before(deadline) {
		if el := time.Since(p.lastWall); el >= 100*time.Millisecond {
			cpu := cpuTime()
			busy := float64(cpu-p.lastCPU) / float64(el) / float64(runtime.GOMAXPROCS(0))
			p.lastCPU, p.lastWall = cpu, time.Now()
			if busy < p.share {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitDead polls until every survivor sees name dead and returns when
// each did (its entry's LastChange).
func waitDead(survivors []*node, name string, timeout time.Duration) ([]time.Time, error) {
	done := make([]time.Time, len(survivors))
	left := len(survivors)
	deadline := time.Now().Add(timeout)
	for tick := 0; left > 0; tick++ {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d survivors do not see %s dead within %s", left, len(survivors), name, timeout)
		}
		time.Sleep(250 * time.Millisecond)
		for i, nd := range survivors {
			if !done[i].IsZero() {
				continue
			}
			for _, m := range nd.d.Members() {
				if m.Name == name && m.State == discovery.StateDead {
					done[i] = m.LastChange
					left--
					break
				}
			}
		}
		if tick%20 == 0 {
			progress("  %d of %d survivors see %s dead", len(survivors)-left, len(survivors), name)
		}
	}
	return done, nil
}

func counters(net *memtransport.Network, nodes []*node) []memtransport.Counters {
	out := make([]memtransport.Counters, len(nodes))
	for i, nd := range nodes {
		out[i] = net.Counters(nd.addr)
	}
	return out
}

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
func since(t time.Time) time.Duration     { return round(time.Since(t)) }

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// settledPacketRate is the packets/s per member below which the broadcast
// queues count as drained: a probe and an ack a second, and some margin.
const settledPacketRate = 3

// phaseRank orders result.phase: a figure is printed only when its
// phase finished.
var phaseRank = map[string]int{"": 0, "converged": 1, "steady": 2, "dead": 3}

// printTable prints every figure beside its goal.
func printTable(w *os.File, n int, latency, jitter time.Duration, results []*result) {
	fmt.Fprintf(w, "\ngossip at %d simulated members, one process, %d CPUs (GOMAXPROCS), shipped LAN timers, one-way latency %s ± %s\n\n", n, runtime.GOMAXPROCS(0), latency, jitter)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "figure")
	for _, r := range results {
		fmt.Fprintf(tw, "\tloss %.0f%%", 100*r.loss)
	}
	fmt.Fprintln(tw, "\tgoal")
	row := func(name, goal string, needs int, f func(*result) string) {
		fmt.Fprint(tw, name)
		for _, r := range results {
			switch {
			case phaseRank[r.phase] >= needs:
				fmt.Fprint(tw, "\t"+f(r))
			case needs == 1 && r.joined < n:
				fmt.Fprintf(tw, "\tnot reached (%d of %d joined)", r.joined, n)
			case needs == 1:
				fmt.Fprintf(tw, "\tnot reached (%d of %d saw everyone)", r.converged, n)
			default:
				fmt.Fprint(tw, "\tnot reached")
			}
		}
		fmt.Fprintln(tw, "\t"+goal)
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	convergeGoal := "— (goal < 5 s is for 1,000)"
	if n >= 1000 {
		met := true
		for _, r := range results {
			met = met && phaseRank[r.phase] >= 1 && r.fromLast < 5*time.Second
		}
		convergeGoal = "< 5 s (NOT met)"
		if met {
			convergeGoal = "< 5 s (met)"
		}
	}
	row("all see all alive, from the last join start", convergeGoal, 1, func(r *result) string { return secs(r.fromLast) })
	row("all see all alive, from the first join start", "—", 1, func(r *result) string { return secs(r.fromFirst) })
	row("  first to last join start (paced)", "—", 0, func(r *result) string { return secs(r.joinSpan) })
	row("  a member sees all, from its own join, median", "—", 1, func(r *result) string { return secs(r.memberMedian) })
	suspicion := time.Duration(3 * max(1, math.Log10(float64(n))) * float64(time.Second)) // SuspicionMult × log10 n × ProbeInterval
	deadGoal := fmt.Sprintf("— (memberlist's suspicion timeout here: %.0f-%.0f s)", suspicion.Seconds(), 6*suspicion.Seconds())
	row("  convergence to drained broadcast queues", "—", 2, func(r *result) string { return secs(r.settle) })
	row("killed member seen dead, median survivor", deadGoal, 3, func(r *result) string { return secs(r.deadMedian) })
	row("killed member seen dead, last survivor", "—", 3, func(r *result) string { return secs(r.deadMax) })
	row("gossip sent per member, mean", "—", 2, func(r *result) string { return fmt.Sprintf("%.0f B/s", r.sentMean) })
	row("gossip sent per member, max", "—", 2, func(r *result) string { return fmt.Sprintf("%.0f B/s", r.sentMax) })
	row("gossip received per member, mean", "—", 2, func(r *result) string { return fmt.Sprintf("%.0f B/s", r.recvMean) })
	row("gossip received per member, max", "—", 2, func(r *result) string { return fmt.Sprintf("%.0f B/s", r.recvMax) })
	row("packets sent per member", "—", 2, func(r *result) string { return fmt.Sprintf("%.1f /s", r.pktSent) })
	row("CPU per member-second (steady)", "—", 2, func(r *result) string { return fmt.Sprintf("%.4f s", r.cpuPerMemberSecond) })
	row("heap per member", "—", 2, func(r *result) string { return fmt.Sprintf("%.0f KiB", r.heapPerMember/1024) })
	row("packets lost / unreachable / inbox full", "—", 3, func(r *result) string {
		return fmt.Sprintf("%d / %d / %d", r.lost, r.dropped, r.overflowed)
	})
	tw.Flush()
	fmt.Fprintln(w, "\nbytes are memberlist's sealed payloads (no IP/UDP/TCP or WireGuard headers); CPU and heap are the whole process divided by the members.")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(w, "loss %.0f%%: stopped: %v\n", 100*r.loss, r.err)
		}
	}
}
