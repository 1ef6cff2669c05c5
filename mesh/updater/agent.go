package updater

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshnode/meshnode/image/update"
	"github.com/meshnode/meshnode/mesh/api"
)

// Node is what the agent needs from the running node (mesh.Node).
type Node interface {
	Name() string
	// Ready is closed once the node is up; before, Status and ConnectNATS
	// must not be called.
	Ready() <-chan struct{}
	Status() api.Status
	ConnectNATS(opts ...nats.Option) (*nats.Conn, error)
}

// Defaults of the agent.
const (
	DefaultTrialDeadline = 10 * time.Minute
	DefaultHealthEvery   = 5 * time.Second
	// healthyChecks in a row bless a trial: one lucky sample is not health.
	healthyChecks = 2
	// handshakeFresh matches the node's status: a live member whose last
	// handshake is older is not reachable.
	handshakeFresh = 3 * time.Minute
	// sessionIdle ends a push that stopped sending.
	sessionIdle = 2 * time.Minute
	// DefaultPollEvery is how often an agent reads the published release
	// itself (follow.go): the backstop for a box that missed the release's
	// messages (its connection or leaf link was down when they went out),
	// so a rollout's stragglers may lag by a minute; in exchange 1,000
	// boxes cost about 17 small reads a second mesh-wide.
	DefaultPollEvery = time.Minute
	// pushWait is how often a published release that arrived during a
	// push looks again whether the push has ended.
	pushWait = 5 * time.Second
)

// Config configures an agent.
type Config struct {
	Node Node
	CA   [32]byte    // the mesh CA public key: manifests must carry its signature
	Box  *update.Box // nil: this node only answers status (not an appliance)
	// Reboot restarts the box (the appliance: stop the node, PID 1
	// reboots). Called at most once.
	Reboot        func(reason string)
	TrialDeadline time.Duration // how long a slot on trial has to become healthy
	HealthEvery   time.Duration
	PollEvery     time.Duration // how often the published release is read; default DefaultPollEvery
	// Say prints one console line (the appliance's serial console);
	// default: Log.
	Say func(line string)
	Log *slog.Logger
	Now func() time.Time
}

// Agent is one node's update agent.
type Agent struct {
	cfg  Config
	name string

	mu      sync.Mutex
	st      NodeStatus
	busy    string // what install-type work runs now, or ""
	session *pushSession
	reboot  sync.Once
	// blessed is closed when a trial ends blessed: a release published
	// during the trial was passed over and is looked at again.
	blessed chan struct{}
}

type pushSession struct {
	id       string
	manifest *update.Manifest
	reboot   string
	files    map[string][]byte
	last     time.Time
}

// New prepares an agent; Run runs it.
func New(cfg Config) *Agent {
	if cfg.TrialDeadline <= 0 {
		cfg.TrialDeadline = DefaultTrialDeadline
	}
	if cfg.HealthEvery <= 0 {
		cfg.HealthEvery = DefaultHealthEvery
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = DefaultPollEvery
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Say == nil {
		log := cfg.Log
		cfg.Say = func(l string) { log.Info(l) }
	}
	if cfg.Reboot == nil {
		cfg.Reboot = func(string) {}
	}
	a := &Agent{cfg: cfg, name: cfg.Node.Name(), blessed: make(chan struct{})}
	a.st = NodeStatus{Name: a.name, Phase: PhaseNoUpdates, Since: cfg.Now().UTC()}
	if b := cfg.Box; b != nil {
		st := b.State()
		run := b.Running()
		a.st.Slot, a.st.Release, a.st.Generation, a.st.Floor = b.Slot(), run.Release, run.Generation, b.Floor()
		a.st.Phase = PhaseIdle
		if st.Last != nil {
			a.st.LastResult, a.st.LastResultTime = st.Last.String(), st.Last.At
		}
		switch b.Kind() {
		case update.BootTrial:
			a.st.Phase, a.st.Target, a.st.TargetRelease = PhaseTrial, st.Pending.Generation, st.Pending.Release
		case update.BootRolledBack:
			a.st.Phase, a.st.Target, a.st.TargetRelease, a.st.Message = PhaseRolledBack, st.Last.Generation, st.Last.Release, st.Last.Reason
		case update.BootInterrupted:
			a.st.Phase, a.st.Target, a.st.TargetRelease, a.st.Message = PhaseInterrupted, st.Last.Generation, st.Last.Release, st.Last.Reason
		}
	}
	return a
}

func (a *Agent) say(format string, args ...any) {
	a.cfg.Say("meshnode: update: " + fmt.Sprintf(format, args...))
}

// Snapshot is the agent's status now.
func (a *Agent) Snapshot() NodeStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st
}

func (a *Agent) set(f func(s *NodeStatus)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.st.Phase
	f(&a.st)
	if a.st.Phase != old {
		a.st.Since = a.cfg.Now().UTC()
	}
	if a.cfg.Box != nil {
		a.st.Floor = a.cfg.Box.Floor()
	}
}

// Run answers status, takes pushes, follows the published release and, on
// a trial boot, blesses the slot once the node is healthy (or fails it),
// until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.Box != nil {
		switch a.cfg.Box.Kind() {
		case update.BootRolledBack:
			a.say("rolled back: %s", a.st.Message)
		case update.BootInterrupted:
			a.say("interrupted: %s", a.st.Message)
		case update.BootTrial:
			go a.trial(ctx)
		}
	}
	nc, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := nc.Subscribe(StatusSubject, func(m *nats.Msg) {
		b, _ := json.Marshal(a.Snapshot())
		_ = m.Respond(b)
	}); err != nil {
		return fmt.Errorf("update agent: subscribe %s: %w", StatusSubject, err)
	}
	if a.cfg.Box != nil {
		// One subscription for the three steps: NATS delivers its messages
		// one at a time, in order.
		if _, err := nc.Subscribe(pushPrefix+a.name+".*", func(m *nats.Msg) { a.push(ctx, m) }); err != nil {
			return fmt.Errorf("update agent: subscribe push: %w", err)
		}
		// Subscribed before the first read in follow: a release put in
		// between is heard, one put before is read.
		heard, err := a.listen(nc)
		if err != nil {
			return fmt.Errorf("update agent: subscribe %w", err)
		}
		go a.follow(ctx, nc, heard)
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func (a *Agent) connect(ctx context.Context) (*nats.Conn, error) {
	select {
	case <-a.cfg.Node.Ready():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		nc, err := a.cfg.Node.ConnectNATS(nats.Name("meshnode-update"))
		if err == nil {
			return nc, nil
		}
		a.cfg.Log.Debug("update agent: NATS not ready", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// trial gates the booted slot: blessed after healthyChecks healthy checks
// in a row within the deadline, else marked bad and the box reboots into
// the slot it came from.
func (a *Agent) trial(ctx context.Context) {
	// The deadline counts from the boot, not from this agent's start: a
	// node that fails and is restarted by PID 1 gets no extra time.
	start := a.cfg.Box.Opened()
	deadline := start.Add(a.cfg.TrialDeadline)
	st := a.cfg.Box.State()
	p := st.Pending
	a.say("slot %s on trial for generation %d (%s): marked good once healthy, within %s", a.cfg.Box.Slot(), p.Generation, p.Release, a.cfg.TrialDeadline)
	ok := 0
	var last error
	for {
		err := a.health(ctx)
		if err == nil {
			ok++
		} else {
			ok, last = 0, err
		}
		if ok >= healthyChecks {
			break
		}
		if err != nil {
			a.set(func(s *NodeStatus) { s.Message = "waiting until healthy: " + err.Error() })
		}
		if a.cfg.Now().After(deadline) {
			reason := fmt.Sprintf("slot %s was not healthy within %s: %v", a.cfg.Box.Slot(), a.cfg.TrialDeadline, last)
			a.set(func(s *NodeStatus) { s.Phase, s.Message = PhaseRollingBack, reason })
			if err := a.cfg.Box.Fail(reason); err != nil {
				// The entry could not be marked bad: the boot counter still
				// falls back once the tries are used.
				a.say("marking slot %s bad: %v", a.cfg.Box.Slot(), err)
			}
			a.say("trial failed: %s; rebooting into slot %s", reason, update.Other(a.cfg.Box.Slot()))
			a.rebootOnce(reason)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.HealthEvery):
		}
	}
	if _, err := a.cfg.Box.Bless(a.cfg.Now()); err != nil {
		a.say("healthy, but marking slot %s good failed: %v", a.cfg.Box.Slot(), err)
		a.set(func(s *NodeStatus) { s.Phase, s.Message = PhaseFailed, "bless: "+err.Error() })
		return
	}
	close(a.blessed)
	took := a.cfg.Now().Sub(start).Round(time.Second)
	a.say("slot %s marked good: generation %d (%s) healthy after %s", a.cfg.Box.Slot(), p.Generation, p.Release, took)
	st = a.cfg.Box.State()
	a.set(func(s *NodeStatus) {
		s.Phase, s.Message = PhaseBlessed, fmt.Sprintf("healthy after %s on trial", took)
		if st.Last != nil {
			s.LastResult, s.LastResultTime = st.Last.String(), st.Last.At
		}
	})
}

// health is nil when the node is what a blessed slot must be: at least one
// alive member with a fresh WireGuard handshake, a NATS route up, and (when
// JetStream has a meta leader) every stream replica on this node current.
// Otherwise it says what is missing.
func (a *Agent) health(ctx context.Context) error {
	select {
	case <-a.cfg.Node.Ready():
	default:
		return errors.New("the node is not up yet")
	}
	st := a.cfg.Node.Status()
	now := a.cfg.Now()
	alive := false
	for _, m := range st.Members {
		if m.State == api.StateAlive && !m.LastHandshake.IsZero() && now.Sub(m.LastHandshake) < handshakeFresh {
			alive = true
			break
		}
	}
	if !alive {
		return errors.New("no alive member with a fresh WireGuard handshake")
	}
	if st.NATS.RoutesUp < 1 {
		return fmt.Errorf("no NATS route up (%d of %d)", st.NATS.RoutesUp, st.NATS.RoutesExpected)
	}
	if !strings.HasPrefix(st.NATS.JetStream, "ok") {
		// No meta leader (a mesh without JetStream quorum, where updates
		// come by push): there is no replica to be current.
		return nil
	}
	nc, err := a.cfg.Node.ConnectNATS(nats.Name("meshnode-update-health"))
	if err != nil {
		return fmt.Errorf("NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l := js.ListStreams(cctx)
	for info := range l.Info() {
		c := info.Cluster
		if c == nil || c.Leader == a.name {
			continue
		}
		for _, r := range c.Replicas {
			if r.Name == a.name && !r.Current {
				return fmt.Errorf("JetStream stream %s: the replica on this node is not current", info.Config.Name)
			}
		}
	}
	if err := l.Err(); err != nil {
		return fmt.Errorf("JetStream stream list: %w", err)
	}
	return nil
}

func (a *Agent) rebootOnce(reason string) {
	a.reboot.Do(func() { a.cfg.Reboot(reason) })
}

// claim marks install work as running; false when other work runs.
func (a *Agent) claim(what string) (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.session; s != nil && a.cfg.Now().Sub(s.last) > sessionIdle {
		a.session, a.busy = nil, "" // a push that stopped sending
	}
	if a.busy != "" {
		return false, a.busy
	}
	if a.st.Phase == PhaseTrial || a.st.Phase == PhaseRebooting || a.st.Phase == PhaseRollingBack {
		return false, a.st.Phase
	}
	a.busy = what
	return true, ""
}

func (a *Agent) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.busy = ""
}

// refuse reports and prints a refusal.
func (a *Agent) refuse(m *update.Manifest, err error) {
	a.say("refused: %v", err) // the error names the update
	a.set(func(s *NodeStatus) {
		s.Phase, s.Message, s.Percent = PhaseRefused, err.Error(), 0
		s.Target, s.TargetRelease = m.Generation, m.Release
	})
}

// install checks the whole bundle and writes it (Box.Install), then
// schedules the reboot.
func (a *Agent) install(b *update.Bundle, policy string) (update.Entry, time.Time, error) {
	m := b.Manifest
	if err := update.CheckFiles(m, b.Files); err != nil {
		a.refuse(m, err)
		return update.Entry{}, time.Time{}, err
	}
	a.set(func(s *NodeStatus) { s.Phase, s.Percent, s.Message = PhaseVerified, 100, "" })
	a.say("writing %s to slot %s", m, update.Other(a.cfg.Box.Slot()))
	e, err := a.cfg.Box.Install(b, a.cfg.CA, a.cfg.Now())
	if err != nil {
		if isRefusal(err) {
			a.refuse(m, err)
		} else {
			a.say("writing %s failed: %v", m, err)
			a.set(func(s *NodeStatus) { s.Phase, s.Message = PhaseFailed, err.Error() })
		}
		return update.Entry{}, time.Time{}, err
	}
	target := update.Other(a.cfg.Box.Slot())
	a.say("%s written to slot %s (loader entry %s)", m, target, e.File)
	at := nextReboot(policy, a.cfg.Now())
	a.set(func(s *NodeStatus) {
		s.Phase, s.RebootAt, s.Message = PhaseWritten, at, ""
		if at.IsZero() {
			s.Message = "reboot the box to start it (reboot policy: manual)"
		}
	})
	if !at.IsZero() {
		go a.rebootAt(m, target, at)
	}
	return e, at, nil
}

// isRefusal tells a refused update (the box will not take it) from a
// failure to write one.
func isRefusal(err error) bool {
	for _, kind := range []error{update.ErrUnsigned, update.ErrBadSignature, update.ErrWrongArch, update.ErrOldGen,
		update.ErrRolledBack, update.ErrExpired, update.ErrHash, update.ErrCmdline, update.ErrTrial} {
		if errors.Is(err, kind) {
			return true
		}
	}
	return false
}

func (a *Agent) rebootAt(m *update.Manifest, target string, at time.Time) {
	// "now" still waits a moment: the answer to a push goes out first.
	time.Sleep(max(time.Until(at), time.Second))
	a.set(func(s *NodeStatus) { s.Phase = PhaseRebooting })
	reason := fmt.Sprintf("starting %s from slot %s", m, target)
	a.say("rebooting: %s", reason)
	a.rebootOnce(reason)
}

// published handles one release from the KV key. It returns false when
// the release should be looked at again (its download failed).
func (a *Agent) published(ctx context.Context, js jetstream.JetStream, data []byte) bool {
	rel, m, err := decodeRelease(data)
	if err != nil {
		a.say("%v", err)
		a.set(func(s *NodeStatus) { s.Phase, s.Message = PhaseRefused, err.Error() })
		return true
	}
	if !rel.Targets(a.name) {
		a.cfg.Log.Info("update: published release is not for this box", "generation", m.Generation, "names", rel.Names, "percent", rel.Percent)
		return true
	}
	if err := a.cfg.Box.Check(m, a.cfg.CA, a.cfg.Now()); err != nil {
		if errors.Is(err, update.ErrOldGen) || errors.Is(err, update.ErrRolledBack) || errors.Is(err, update.ErrTrial) {
			// Up to date, already failed here (the status says so), or
			// busy proving the last one: nothing to report.
			a.cfg.Log.Info("update: published release not taken", "why", err)
			return true
		}
		a.refuse(m, err)
		return true
	}
	for {
		ok, what := a.claim("download")
		if ok {
			break
		}
		if what != "push" {
			a.cfg.Log.Info("update: published release not taken", "busy", what)
			return true
		}
		// A push is running: take the release when it ends (the push may
		// have been the same one, then Check below refuses it quietly).
		select {
		case <-ctx.Done():
			return true
		case <-time.After(pushWait):
		}
	}
	defer a.release()
	if err := a.cfg.Box.Check(m, a.cfg.CA, a.cfg.Now()); err != nil {
		a.cfg.Log.Info("update: published release not taken", "why", err)
		return true
	}
	b, err := a.download(ctx, js, m)
	if err != nil {
		a.say("downloading %s: %v", m, err)
		a.set(func(s *NodeStatus) { s.Phase, s.Message = PhaseFailed, "download: "+err.Error() })
		return false
	}
	_, _, _ = a.install(b, rel.Reboot)
	return true
}

// push handles one step of a direct push (offer, chunk, commit).
func (a *Agent) push(ctx context.Context, msg *nats.Msg) {
	step := msg.Subject[strings.LastIndexByte(msg.Subject, '.')+1:]
	var r pushReply
	var err error
	switch step {
	case "offer":
		r, err = a.offer(msg)
	case "chunk":
		err = a.chunk(msg)
	case "commit":
		r, err = a.commit(msg)
	default:
		err = fmt.Errorf("unknown push step %q", step)
	}
	r.OK = err == nil
	if err != nil {
		r.Error = err.Error()
	}
	b, _ := json.Marshal(r)
	_ = msg.Respond(b)
}

func (a *Agent) offer(msg *nats.Msg) (pushReply, error) {
	m, err := update.ParseManifest(msg.Data)
	if err != nil {
		a.say("refused a pushed manifest: %v", err)
		return pushReply{}, err
	}
	policy, err := ParseReboot(msg.Header.Get(hdrReboot))
	if err != nil {
		return pushReply{}, err
	}
	if err := a.cfg.Box.Check(m, a.cfg.CA, a.cfg.Now()); err != nil {
		a.refuse(m, err)
		return pushReply{}, err
	}
	if ok, what := a.claim("push"); !ok {
		return pushReply{}, fmt.Errorf("busy (%s): try again later", what)
	}
	var id [8]byte
	rand.Read(id[:])
	s := &pushSession{id: hex.EncodeToString(id[:]), manifest: m, reboot: policy, files: map[string][]byte{}, last: a.cfg.Now()}
	a.mu.Lock()
	a.session = s
	a.mu.Unlock()
	a.say("receiving %s: %d bytes", m, m.TotalSize())
	a.set(func(st *NodeStatus) {
		st.Phase, st.Target, st.TargetRelease, st.Percent, st.Message = PhaseReceiving, m.Generation, m.Release, 0, ""
	})
	return pushReply{Session: s.id}, nil
}

func (a *Agent) current(msg *nats.Msg) (*pushSession, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.session
	if s == nil || s.id != msg.Header.Get(hdrSession) {
		return nil, errors.New("no such push session (it expired or another push replaced it): start again")
	}
	s.last = a.cfg.Now()
	return s, nil
}

func (a *Agent) chunk(msg *nats.Msg) error {
	s, err := a.current(msg)
	if err != nil {
		return err
	}
	name := msg.Header.Get(hdrFile)
	f, ok := s.manifest.File(name)
	if !ok {
		return fmt.Errorf("file %q is not in the manifest", name)
	}
	off, err := strconv.Atoi(msg.Header.Get(hdrOffset))
	if err != nil || off != len(s.files[name]) {
		return fmt.Errorf("%s: chunk at offset %s, expected %d", name, msg.Header.Get(hdrOffset), len(s.files[name]))
	}
	if uint64(off+len(msg.Data)) > f.Size {
		return fmt.Errorf("%s: more than the manifest's %d bytes", name, f.Size)
	}
	s.files[name] = append(s.files[name], msg.Data...)
	var got uint64
	for _, d := range s.files {
		got += uint64(len(d))
	}
	a.set(func(st *NodeStatus) { st.Percent = int(min(got*100/max(s.manifest.TotalSize(), 1), 99)) })
	return nil
}

func (a *Agent) commit(msg *nats.Msg) (pushReply, error) {
	s, err := a.current(msg)
	if err != nil {
		return pushReply{}, err
	}
	defer func() {
		a.mu.Lock()
		a.session = nil
		a.mu.Unlock()
		a.release()
	}()
	e, at, err := a.install(&update.Bundle{Manifest: s.manifest, Files: s.files}, s.reboot)
	if err != nil {
		return pushReply{}, err
	}
	return pushReply{Entry: e.File, RebootAt: at}, nil
}
