package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshnode/meshnode/scripts/meshlab"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
)

// The fault test's bounds (issue 15): what an application with
// natsclient's recipe may see when a box dies, is cut off, or the whole
// site loses power.
const (
	// maxAckGap is the longest pause between two acknowledged publishes.
	maxAckGap = 15 * time.Second
	// maxToHealthy bounds heal → every node healthy.
	maxToHealthy = 60 * time.Second
	// partitionFor is how long phase 2 keeps a node cut off.
	partitionFor = 30 * time.Second
	// leaderDownFor is how long phase 1 publishes with the leader dead.
	leaderDownFor = 20 * time.Second
)

const (
	faultsStream  = "FAULTS"
	faultsSubject = "faults.m"
)

// TestJetStreamFaults is issue 15's fault test: a 5-node mesh with the
// default timers and bootstrap, an R3 stream, and a real nats.go client
// in a member's namespace publishing with natsclient's recipe through
//
//  1. kill -9 of the stream leader (the client is connected to it), 20 s
//     of publishing, restart;
//  2. a 30 s underlay partition of the (new) stream leader, the client
//     connected to it;
//  3. kill -9 of every node at once (a site losing power), all started
//     again.
//
// It then reads the stream back with a fresh consumer and asserts that no
// acknowledged message is missing, that acks never paused longer than
// maxAckGap, and that every node was healthy within maxToHealthy of each
// heal. The figures are printed as "figure:" lines.
func TestJetStreamFaults(t *testing.T) {
	lab := newLab(t)
	netnstest.RequireTool(t, "nft")
	// The shipped timers: the client recipe's bounds must hold with what
	// an operator runs, not with the lab's fast gossip.
	lab.Fast = false
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	begun := time.Now()

	names := []string{"node1", "node2", "node3", "node4", "node5"}
	if err := lab.StartMesh(ctx, "faults", names); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	admin := lab.Nodes[0]
	eventually(t, 60*time.Second, "the admin creates the R3 stream", func() error {
		_, err := admin.Meshnode("nats", "--state", admin.State, "stream-add", faultsStream, "faults.>", "3")
		return err
	})
	f := &faults{t: t, lab: lab, ctx: ctx, urls: map[string]string{}}
	for _, n := range lab.Nodes {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		f.urls[n.Name] = st.NATS.ClientURL
	}
	// The publisher lives on a box that holds no replica, so that its own
	// node stays up through phases 1 and 2 and is never the leader killed.
	f.via = admin
	info := f.waitStream(admin)
	for _, n := range slices.Backward(lab.Nodes) {
		if !slices.Contains(info.servers(), n.Name) {
			f.via = n
			break
		}
	}
	// A stream just created may not have its replicas current yet.
	f.waitFor(maxToHealthy, "the mesh healthy before the faults", f.healthy)
	t.Logf("mesh of %d up, stream %s on %v, publisher on %s, after %s", len(names), faultsStream, info.servers(), f.via.Name, time.Since(begun).Round(time.Millisecond))

	var phases []*phaseResult

	// Phase 1: kill -9 the stream leader while the client publishes to it.
	{
		leader := f.node(f.waitStream(f.via).Cluster.Leader)
		p := f.startPublisher(1, "kill -9 of the stream leader "+leader.Name, leader)
		p.waitConnectedTo(f.urls[leader.Name])
		p.waitAcks(50)
		p.fault()
		leader.Kill()
		f.sleep(leaderDownFor) // the 20 s of publishing with it dead
		if err := leader.Up(); err != nil {
			t.Fatal(err)
		}
		phases = append(phases, f.endPhase(p, "after "+leader.Name+" restarted"))
	}

	// Phase 2: cut the stream leader off the underlay for 30 s while the
	// client publishes to it.
	{
		target := f.node(f.waitStream(f.via).Cluster.Leader)
		if target == f.via {
			t.Fatalf("the publisher's node %s leads the stream: it holds no replica", f.via.Name)
		}
		p := f.startPublisher(2, "30 s partition of the stream leader "+target.Name, target)
		p.waitConnectedTo(f.urls[target.Name])
		p.waitAcks(50)
		p.fault()
		if err := lab.Bridge.Partition(target.NS); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lab.Bridge.Heal(target.NS) })
		f.sleep(partitionFor)
		if err := lab.Bridge.Heal(target.NS); err != nil {
			t.Fatal(err)
		}
		phases = append(phases, f.endPhase(p, "after the partition of "+target.Name+" healed"))
	}

	// Phase 3: every node killed at once, all started again. kill -9, not
	// SIGTERM: a site losing power is the case "everything at once" means,
	// and SIGTERM would make each node leave the gossip gracefully first,
	// which a power cut does not. (Acked messages are in the page cache,
	// which kill -9 keeps; a power cut is the store's fsync policy, not
	// this test.) The publisher's own node dies too; the client keeps
	// retrying until some node answers.
	{
		p := f.startPublisher(3, "kill -9 of every node, all restarted", nil)
		p.waitAcks(50)
		p.fault()
		// SIGKILL to every PID first, then reap: all die within
		// milliseconds of each other.
		for _, n := range lab.Nodes {
			if !n.Running() {
				t.Fatalf("%s is not running before the restart of every node", n.Name)
			}
			if pid := n.PID(); pid > 0 { // never 0: that would be our process group
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		for _, n := range lab.Nodes {
			n.Kill()
		}
		for _, n := range lab.Nodes {
			if err := n.Up(); err != nil {
				t.Fatal(err)
			}
		}
		healthyAt := f.waitHealthy(p, "after every node restarted")
		f.waitFor(30*time.Second, "100 acks after the restart", func() error {
			if n := p.acksAfter(healthyAt); n < 100 {
				return fmt.Errorf("%d acks", n)
			}
			return nil
		})
		phases = append(phases, p.stop())
	}

	// Read back every message with a fresh consumer.
	stored := f.readStream()
	byID := map[string][]uint64{}
	for _, m := range stored.msgs {
		byID[m.id] = append(byID[m.id], m.seq)
	}
	var acked, dupAcks, lost, misacked, refused int
	var lostIDs, misackedIDs []string
	for _, ph := range phases {
		for _, a := range ph.acks {
			acked++
			if a.dup {
				dupAcks++
			}
			seqs := byID[a.id]
			switch {
			case len(seqs) == 0:
				lost++
				lostIDs = append(lostIDs, a.id)
			case !slices.Contains(seqs, a.streamSeq):
				misacked++
				misackedIDs = append(misackedIDs, fmt.Sprintf("%s acked at %d, stored at %v", a.id, a.streamSeq, seqs))
			}
		}
		refused += ph.refused
	}
	storedDups := 0
	for _, seqs := range byID {
		storedDups += len(seqs) - 1
	}
	t.Logf("figure: total: acked %d, duplicate acks %d, stored %d messages (stream sequences %d..%d), stored twice %d, lost %d, misacked %d, refusals %d",
		acked, dupAcks, len(stored.msgs), stored.first, stored.last, storedDups, lost, misacked, refused)
	t.Logf("figure: wall time %s", time.Since(begun).Round(time.Second))
	if refused > 0 {
		// Not loss (the helper retries with the same Msg-Id and the
		// message is stored once), but the recipe handed the application
		// an error for a message a retry would have stored:
		// natsclient.Publish retries the failover answers it knows
		// (transientAPIError); the events above name the one it did not.
		t.Errorf("natsclient.Publish returned %d refusals to the application that a retry with the same Msg-Id resolved", refused)
	}

	if lost > 0 {
		t.Errorf("%d acknowledged messages are not in the stream: %v", lost, head(lostIDs, 20))
	}
	if misacked > 0 {
		t.Errorf("%d acks name a stream sequence that holds another message: %v", misacked, head(misackedIDs, 20))
	}
	for _, ph := range phases {
		// The client was connected to a server the fault took away: if it
		// never noticed, the phase tested nothing.
		if ph.discAt.IsZero() {
			t.Errorf("phase %d (%s): the client was never disconnected after the fault", ph.n, ph.what)
		}
		if ph.gap > maxAckGap {
			t.Errorf("phase %d (%s): acks paused %s (after %s), want ≤ %s", ph.n, ph.what, ph.gap.Round(time.Millisecond), ph.gapAfter, maxAckGap)
		}
	}
}

// faults is the state the phases share.
type faults struct {
	t    *testing.T
	lab  *meshlab.Lab
	ctx  context.Context
	via  *meshlab.Node     // the publisher's node
	urls map[string]string // node name → its NATS client URL
}

func (f *faults) node(name string) *meshlab.Node {
	for _, n := range f.lab.Nodes {
		if n.Name == name {
			return n
		}
	}
	f.t.Fatalf("no lab node %q", name)
	return nil
}

// waitFor is eventually bounded by the test's context as well.
func (f *faults) waitFor(timeout time.Duration, what string, check func() error) {
	f.t.Helper()
	if dl, ok := f.ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	eventually(f.t, timeout, what, check)
}

// waitStream waits until the stream has a leader, asking on n.
func (f *faults) waitStream(n *meshlab.Node) *streamInfo {
	f.t.Helper()
	var info *streamInfo
	f.waitFor(maxToHealthy, "stream "+faultsStream+" has a leader", func() error {
		var err error
		if info, err = askStream(n, faultsStream); err != nil {
			return err
		}
		if info.Cluster.Leader == "" {
			return errors.New("no leader")
		}
		return nil
	})
	return info
}

// healthy says why the mesh is not healthy: every node sees every other
// alive with a handshake and all NATS routes up (meshlab's Complete), every
// node's JetStream has a meta leader, and the stream has a leader with both
// replicas current.
func (f *faults) healthy() error {
	for _, n := range f.lab.Nodes {
		if ok, why := n.Complete(len(f.lab.Nodes)); !ok {
			return errors.New(why)
		}
		st, err := n.Status()
		if err != nil {
			return err
		}
		if !strings.HasPrefix(st.NATS.JetStream, "ok, meta leader") {
			return fmt.Errorf("%s: JetStream %s", n.Name, st.NATS.JetStream)
		}
	}
	info, err := askStream(f.via, faultsStream)
	if err != nil {
		return err
	}
	return info.current(faultsStream, 3)
}

// sleep waits d (a duration the scenario prescribes, not a guess at how
// long something takes), or fails when the test's time is up.
func (f *faults) sleep(d time.Duration) {
	f.t.Helper()
	select {
	case <-time.After(d):
	case <-f.ctx.Done():
		f.t.Fatal(f.ctx.Err())
	}
}

// endPhase waits until the mesh is healthy again and stops the phase's
// publisher.
func (f *faults) endPhase(p *publisher, what string) *phaseResult {
	f.t.Helper()
	f.waitHealthy(p, what)
	return p.stop()
}

// waitHealthy polls healthy from now (the heal) for maxToHealthy and
// records in p how long it took; it returns when. If the mesh does not get
// healthy in time the test fails, after p's figures are printed.
func (f *faults) waitHealthy(p *publisher, what string) time.Time {
	f.t.Helper()
	since := time.Now()
	var why, first error
	polls := 0
	for time.Since(since) < maxToHealthy && f.ctx.Err() == nil {
		why = f.healthy()
		polls++
		if why == nil {
			at := time.Now()
			p.res.toHealthy = at.Sub(since)
			f.t.Logf("phase %d: healthy %s in %s (%d polls; the first said: %v)", p.res.n, what, p.res.toHealthy.Round(time.Millisecond), polls, first)
			return at
		}
		if first == nil {
			first = why
		}
		select {
		case <-f.ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
	p.res.toHealthy = time.Since(since)
	p.stop()
	f.t.Fatalf("phase %d: not healthy within %s %s: %v", p.res.n, maxToHealthy, what, why)
	return time.Time{}
}

// nodeEnv is what `meshnode nats-env` prints on n, as environment
// variables; NATS_URL is reordered so that first (when not nil) comes
// first and the rest keep nats-env's order.
func (f *faults) nodeEnv(n, first *meshlab.Node) []string {
	f.t.Helper()
	out, err := n.Meshnode("nats-env", "--state", n.State)
	if err != nil {
		f.t.Fatal(err)
	}
	var env []string
	for _, l := range strings.Split(out, "\n") {
		kv, ok := strings.CutPrefix(l, "export ")
		if !ok {
			continue
		}
		if urls, ok := strings.CutPrefix(kv, "NATS_URL="); ok {
			list := strings.Split(urls, ",")
			if len(list) != len(f.lab.Nodes) {
				f.t.Fatalf("%s: nats-env lists %d URLs, want %d: %s", n.Name, len(list), len(f.lab.Nodes), urls)
			}
			if first != nil {
				u := f.urls[first.Name]
				if !slices.Contains(list, u) {
					f.t.Fatalf("%s: nats-env does not list %s (%s): %s", n.Name, first.Name, u, urls)
				}
				list = append([]string{u}, slices.DeleteFunc(list, func(s string) bool { return s == u })...)
			}
			kv = "NATS_URL=" + strings.Join(list, ",")
		}
		env = append(env, kv)
	}
	if len(env) != 3 {
		f.t.Fatalf("%s: nats-env printed %d exports, want NATS_URL, NATS_NKEY, NATS_CA:\n%s", n.Name, len(env), out)
	}
	return env
}

// helperCmd is this test binary in helper mode inside on's namespace (ip netns exec execs it: the PID is the helper's own).
func (f *faults) helperCmd(on *meshlab.Node, mode string, env []string) *exec.Cmd {
	cmd := on.NS.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), env...),
		faultsModeEnv+"="+mode, faultsStreamEnv+"="+faultsStream, faultsSubjectEnv+"="+faultsSubject)
	return cmd
}

// ack is one acknowledged publish.
type ack struct {
	id        string
	seq       int
	at        time.Time
	streamSeq uint64
	dup       bool
}

// phaseResult is what one phase's publisher saw.
type phaseResult struct {
	n         int
	what      string
	faultAt   time.Time     // when the fault was injected
	discAt    time.Time     // the client's first disconnect after it
	acksAgain time.Duration // fault → the first ack after discAt
	acks      []ack
	refused   int
	conns     int // connects, the first included
	gap       time.Duration
	gapAfter  string // the Msg-Id the longest gap followed
	toHealthy time.Duration
}

func (r *phaseResult) dupAcks() int {
	n := 0
	for _, a := range r.acks {
		if a.dup {
			n++
		}
	}
	return n
}

// publisher is one phase's running helper and what it has reported.
type publisher struct {
	f       *faults
	cmd     *exec.Cmd
	prefix  string
	errLog  string
	exited  chan struct{}
	stopped bool // stop ran

	mu       sync.Mutex // guards res, connURLs and events
	res      *phaseResult
	connURLs []string
	events   []string // the helper's lines other than acks
}

// startPublisher starts a publisher for one phase, its URLs from
// nats-env on the publisher's node with first (if any) moved to the
// front. The helper is stopped by PID when the test ends, whatever
// happens.
func (f *faults) startPublisher(phase int, what string, first *meshlab.Node) *publisher {
	f.t.Helper()
	prefix := fmt.Sprintf("p%d", phase)
	cmd := f.helperCmd(f.via, "publish", append(f.nodeEnv(f.via, first), faultsPrefixEnv+"="+prefix))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	errLog := filepath.Join(f.lab.Dir, "publisher-"+prefix+".log")
	ef, err := os.Create(errLog)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd.Stderr = ef
	if err := cmd.Start(); err != nil {
		ef.Close()
		f.t.Fatal(err)
	}
	p := &publisher{f: f, cmd: cmd, prefix: prefix, errLog: errLog, exited: make(chan struct{}), res: &phaseResult{n: phase, what: what}}
	go func() {
		p.scan(stdout)
		cmd.Wait()
		ef.Close()
		close(p.exited)
	}()
	f.t.Cleanup(func() { p.kill() })
	return p
}

// scan reads the helper's lines until it exits.
func (p *publisher) scan(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 2 {
			continue
		}
		if fl[0] == "stopped" {
			// What follows is the helper closing its connection.
			io.Copy(io.Discard, r)
			return
		}
		p.mu.Lock()
		switch fl[0] {
		case "ack":
			if len(fl) == 5 {
				seq, _ := strconv.Atoi(fl[1])
				ns, _ := strconv.ParseInt(fl[2], 10, 64)
				ss, _ := strconv.ParseUint(fl[3], 10, 64)
				p.res.acks = append(p.res.acks, ack{id: p.prefix + "-" + fl[1], seq: seq, at: time.Unix(0, ns), streamSeq: ss, dup: fl[4] == "1"})
			}
		case "conn", "disc", "refused", "connfail":
			// The phase's story, printed when it ends.
			p.events = append(p.events, sc.Text())
		}
		switch fl[0] {
		case "conn":
			if len(fl) == 3 {
				p.connURLs = append(p.connURLs, fl[2])
				p.res.conns++
			}
		case "refused":
			p.res.refused++
		case "disc":
			ns, _ := strconv.ParseInt(fl[1], 10, 64)
			if at := time.Unix(0, ns); !p.res.faultAt.IsZero() && p.res.discAt.IsZero() && at.After(p.res.faultAt) {
				p.res.discAt = at
			}
		}
		p.mu.Unlock()
	}
}

// fault records that the phase's fault is injected now.
func (p *publisher) fault() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.res.faultAt = time.Now()
}

func (p *publisher) acksAfter(t time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, a := range slices.Backward(p.res.acks) {
		if !a.at.After(t) {
			break
		}
		n++
	}
	return n
}

func (p *publisher) waitAcks(n int) {
	p.f.t.Helper()
	p.f.waitFor(60*time.Second, fmt.Sprintf("%s: %d acks", p.prefix, n), func() error {
		select {
		case <-p.exited:
			return fmt.Errorf("publisher exited: %s", p.tail())
		default:
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.res.acks) < n {
			return fmt.Errorf("%d acks", len(p.res.acks))
		}
		return nil
	})
}

// waitConnectedTo checks that the helper's first connection is to url: the
// case where a stall would show.
func (p *publisher) waitConnectedTo(url string) {
	p.f.t.Helper()
	p.f.waitFor(30*time.Second, p.prefix+": connected to "+url, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case len(p.connURLs) == 0:
			return errors.New("not connected yet")
		case p.connURLs[0] != url:
			p.f.t.Fatalf("%s: the publisher connected first to %s, want %s", p.prefix, p.connURLs[0], url)
		}
		return nil
	})
}

func (p *publisher) tail() string {
	b, _ := os.ReadFile(p.errLog)
	return strings.TrimSpace(string(b))
}

// stop sends SIGTERM, waits for the helper's last line and computes the
// phase's longest gap: between consecutive acks, and from the last ack to
// the stop (a publisher still stalled at the end counts).
func (p *publisher) stop() *phaseResult {
	p.f.t.Helper()
	if p.stopped {
		return p.res
	}
	p.stopped = true
	stopped := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.kill()
		p.f.t.Fatalf("%s: publisher did not stop on SIGTERM: %s", p.prefix, p.tail())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.res
	prev, prevID := time.Time{}, "start"
	for _, a := range r.acks {
		if !prev.IsZero() && a.at.Sub(prev) > r.gap {
			r.gap, r.gapAfter = a.at.Sub(prev), prevID
		}
		prev, prevID = a.at, a.id
	}
	if !prev.IsZero() && stopped.Sub(prev) > r.gap {
		r.gap, r.gapAfter = stopped.Sub(prev), prevID+" (until the stop)"
	}
	if t := p.tail(); t != "" {
		p.f.t.Logf("%s publisher stderr: %s", p.prefix, t)
	}
	p.f.t.Logf("phase %d: the client's events (s from the fault):\n%s", r.n, p.story())
	if leaders := p.f.leaderChanges(r.faultAt, stopped); leaders != "" {
		p.f.t.Logf("phase %d: JetStream leader changes in the node logs (s from the fault):\n%s", r.n, leaders)
	}
	// Acks again: the first ack after the client left the server at fault
	// (an ack already on its way at the fault says nothing).
	again, from := "none", r.discAt
	if from.IsZero() {
		from = r.faultAt
	}
	for _, a := range r.acks {
		if a.at.After(from) {
			r.acksAgain = a.at.Sub(r.faultAt)
			again = r.acksAgain.Round(time.Millisecond).String()
			break
		}
	}
	disc := "none"
	if !r.discAt.IsZero() {
		disc = r.discAt.Sub(r.faultAt).Round(time.Millisecond).String()
	}
	p.f.t.Logf("figure: phase %d (%s): acked %d, duplicate acks %d, refusals %d, longest ack gap %s (after %s), fault → client disconnect %s, fault → acks again %s, reconnects %d, time to healthy %s",
		r.n, r.what, len(r.acks), r.dupAcks(), r.refused, r.gap.Round(time.Millisecond), r.gapAfter, disc, again, max(r.conns-1, 0), r.toHealthy.Round(time.Millisecond))
	return r
}

// story is the helper's events with their times relative to the fault
// (p.mu held).
func (p *publisher) story() string {
	var b strings.Builder
	for _, e := range p.events {
		kind, rest, _ := strings.Cut(e, " ")
		ts, rest, _ := strings.Cut(rest, " ")
		if kind == "refused" { // refused SEQ TIME ERR
			seq := ts
			ts, rest, _ = strings.Cut(rest, " ")
			rest = p.prefix + "-" + seq + ": " + rest
		}
		ns, _ := strconv.ParseInt(ts, 10, 64)
		fmt.Fprintf(&b, "\t%+8.3f %s %s\n", time.Unix(0, ns).Sub(p.res.faultAt).Seconds(), kind, rest)
	}
	return b.String()
}

// kill stops the helper by PID if it is still running.
func (p *publisher) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// leaderChanges lists the stream and meta leader elections the nodes
// logged between from and to, with their times relative to from: what the
// client waited for after a fault.
func (f *faults) leaderChanges(from, to time.Time) string {
	type line struct {
		at   time.Time
		text string
	}
	var ls []line
	for _, n := range f.lab.Nodes {
		b, err := os.ReadFile(n.Log)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.Contains(l, "new stream leader") && !strings.Contains(l, "new metadata leader") {
				continue
			}
			ts, ok := strings.CutPrefix(strings.SplitN(l, " ", 2)[0], "time=")
			at, err := time.Parse(time.RFC3339Nano, ts)
			if !ok || err != nil || at.Before(from) || at.After(to) {
				continue
			}
			_, msg, _ := strings.Cut(l, `msg="`)
			msg, _, _ = strings.Cut(msg, `"`)
			ls = append(ls, line{at, n.Name + ": " + msg})
		}
	}
	slices.SortFunc(ls, func(a, b line) int { return a.at.Compare(b.at) })
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "\t%+8.3f %s\n", l.at.Sub(from).Seconds(), l.text)
	}
	return b.String()
}

// storedStream is the stream as a fresh consumer read it.
type storedStream struct {
	msgs        []storedMsg
	first, last uint64
}

type storedMsg struct {
	seq uint64
	id  string
}

// readStream runs the helper in read mode on the admin's node, as the
// admin: members may not create consumers (natsnode's memberDeny), and a
// fresh ordered consumer is the plainest way to see every message.
func (f *faults) readStream() *storedStream {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Minute)
	defer cancel()
	admin := f.lab.Nodes[0]
	cmd := f.helperCmd(admin, "read", f.nodeEnv(admin, nil))
	var errb strings.Builder
	cmd.Stderr = &errb
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			cmd.Process.Kill()
		case <-done:
		}
	}()
	s := &storedStream{}
	ended := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		switch {
		case len(fl) == 3 && fl[0] == "msg":
			seq, _ := strconv.ParseUint(fl[1], 10, 64)
			s.msgs = append(s.msgs, storedMsg{seq: seq, id: fl[2]})
		case len(fl) == 4 && fl[0] == "end":
			s.first, _ = strconv.ParseUint(fl[2], 10, 64)
			s.last, _ = strconv.ParseUint(fl[3], 10, 64)
			ended = true
		}
	}
	err = cmd.Wait()
	close(done)
	if err != nil || !ended {
		f.t.Fatalf("reading the stream back: %v (%d messages read): %s", err, len(s.msgs), errb.String())
	}
	return s
}

func head(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
