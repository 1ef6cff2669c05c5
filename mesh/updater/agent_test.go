package updater

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/meshnode/meshnode/image/update"
	"github.com/meshnode/meshnode/mesh/api"
)

// natsServer is one nats-server with JetStream on a loopback port.
func natsServer(t *testing.T) *server.Server {
	t.Helper()
	return startServer(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
}

// startServer starts a nats-server with opts, stopped when the test ends.
func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return s
}

// fakeNode is a node whose health the test sets.
type fakeNode struct {
	name string
	srv  *server.Server
	opts []nats.Option // how the agent authenticates (nil: as the server's default user)
	mu   sync.Mutex
	st   api.Status
}

func (n *fakeNode) Name() string { return n.name }
func (n *fakeNode) Ready() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
func (n *fakeNode) Status() api.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.st
	st.Members = append([]api.MemberStatus(nil), n.st.Members...)
	for i := range st.Members {
		if !st.Members[i].LastHandshake.IsZero() {
			st.Members[i].LastHandshake = time.Now() // fresh
		}
	}
	return st
}
func (n *fakeNode) ConnectNATS(opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(n.srv.ClientURL(), append(append([]nats.Option(nil), n.opts...), opts...)...)
}

func (n *fakeNode) setHealthy(ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.st = api.Status{Name: n.name, NATS: api.NATSStatus{RoutesUp: 1, RoutesExpected: 1, JetStream: "ok, meta leader x, 1 servers"}}
	if ok {
		n.st.Members = []api.MemberStatus{{Name: "admin", State: api.StateAlive, LastHandshake: time.Now()}}
	} else {
		n.st.Members = []api.MemberStatus{{Name: "admin", State: api.StateDead}}
	}
}

func testCA(t *testing.T) (ed25519.PrivateKey, [32]byte) {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(0xc0 + i)
	}
	k := ed25519.NewKeyFromSeed(seed)
	var p [32]byte
	copy(p[:], k.Public().(ed25519.PublicKey))
	return k, p
}

func freshESP(t *testing.T) update.DirFS {
	esp := update.DirFS(t.TempDir())
	for name, data := range map[string][]byte{
		"loader/entries/meshnode-a.conf": update.EntryText("a", 2, "v1", "console=ttyS0"),
		"loader/entries/meshnode-b.conf": update.EntryText("b", 1, "v1", "console=ttyS0"),
		"meshnode/a/vmlinuz":             []byte("kernel v1"), "meshnode/a/initrd.img": []byte("initrd v1"),
		"meshnode/b/vmlinuz": []byte("kernel v1"), "meshnode/b/initrd.img": []byte("initrd v1"),
	} {
		if err := esp.WriteFile(name, data); err != nil {
			t.Fatal(err)
		}
	}
	return esp
}

func bundle(t *testing.T, gen uint64) *update.Bundle {
	key, pub := testCA(t)
	// Larger than one chunk, so pushes take several.
	big := []byte(strings.Repeat(fmt.Sprintf("initrd %d ", gen), ChunkSize/5))
	b, err := update.NewBundle(gen, "amd64", fmt.Sprintf("v%d", gen), map[string][]byte{
		update.FileKernel: []byte(fmt.Sprintf("kernel %d", gen)), update.FileInitramfs: big, update.FileCmdline: []byte("console=ttyS0\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sign(key, pub, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	return b
}

func espTree(t *testing.T, dir string) string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			out = append(out, fmt.Sprintf("%s %d %q", strings.TrimPrefix(p, dir), len(b), b[:min(len(b), 12)]))
		}
		return nil
	})
	sort.Strings(out)
	return strings.Join(out, "\n")
}

type rig struct {
	t      *testing.T
	srv    *server.Server
	node   *fakeNode
	esp    update.DirFS
	state  string
	box    *update.Box
	agent  *Agent
	reboot chan string
	admin  *nats.Conn
}

// rigOption changes the agent's config or node before the agent runs.
type rigOption func(*Config, *fakeNode)

// newRig runs an agent for box "edge-1" on slot, with the ESP and state as
// they are.
func newRig(t *testing.T, srv *server.Server, esp update.DirFS, state, slot string, run update.Running, deadline time.Duration, opts ...rigOption) *rig {
	t.Helper()
	return newRigHealth(t, srv, esp, state, slot, run, deadline, true, opts...)
}

// newRigHealth is newRig with the node healthy or not from the start: set
// before the agent runs, since its checks begin at once.
func newRigHealth(t *testing.T, srv *server.Server, esp update.DirFS, state, slot string, run update.Running, deadline time.Duration, healthy bool, opts ...rigOption) *rig {
	t.Helper()
	_, pub := testCA(t)
	box, err := update.Open(update.BoxConfig{ESP: esp, StatePath: state, Slot: slot, Running: run, Arch: "amd64"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, srv: srv, node: &fakeNode{name: "edge-1", srv: srv}, esp: esp, state: state, box: box, reboot: make(chan string, 1)}
	r.node.setHealthy(healthy)
	cfg := Config{Node: r.node, CA: pub, Box: box, TrialDeadline: deadline, HealthEvery: 50 * time.Millisecond,
		Reboot: func(why string) { r.reboot <- why }, Say: func(l string) { t.Log(l) }}
	for _, o := range opts {
		o(&cfg, r.node)
	}
	r.agent = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.agent.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	r.admin, err = nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.admin.Close)
	r.waitStatus(func(s NodeStatus) bool { return s.Name == "edge-1" })
	return r
}

func (r *rig) waitStatus(ok func(NodeStatus) bool) NodeStatus {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last []NodeStatus
	for time.Now().Before(deadline) {
		last, _ = Status(context.Background(), r.admin, 1, time.Second)
		if len(last) == 1 && ok(last[0]) {
			return last[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("status never as wanted; last %+v", last)
	return NodeStatus{}
}

func (r *rig) waitReboot() string {
	r.t.Helper()
	select {
	case why := <-r.reboot:
		return why
	case <-time.After(20 * time.Second):
		r.t.Fatal("no reboot")
		return ""
	}
}

func TestPushInstallsAndReboots(t *testing.T) {
	srv := natsServer(t)
	r := newRig(t, srv, freshESP(t), filepath.Join(t.TempDir(), "u.json"), "a", update.Running{Generation: 1, Release: "v1"}, time.Minute)
	var last uint64
	res, err := Push(context.Background(), r.admin, "edge-1", bundle(t, 2), RebootNow, func(done, total uint64) { last = done })
	if err != nil {
		t.Fatal(err)
	}
	if res.Entry != "meshnode-b+3.conf" || res.RebootAt.IsZero() || last != bundle(t, 2).Manifest.TotalSize() {
		t.Fatalf("push result %+v, progress %d", res, last)
	}
	if why := r.waitReboot(); !strings.Contains(why, "generation 2") {
		t.Fatalf("reboot reason %q", why)
	}
	got, _ := r.esp.ReadFile("meshnode/b/vmlinuz")
	if string(got) != "kernel 2" {
		t.Fatalf("slot b kernel %q", got)
	}
	s := r.waitStatus(func(s NodeStatus) bool { return s.Phase == PhaseRebooting })
	if s.Target != 2 || s.Generation != 1 || s.Floor != 2 {
		t.Fatalf("status %+v", s)
	}
}

func TestPushRefusedWritesNothing(t *testing.T) {
	srv := natsServer(t)
	esp := freshESP(t)
	r := newRig(t, srv, esp, filepath.Join(t.TempDir(), "u.json"), "a", update.Running{Generation: 3, Release: "v3"}, time.Minute)
	before := espTree(t, string(esp))
	bad := bundle(t, 4)
	bad.Manifest.Signature[3] ^= 0x40
	wrongHash := bundle(t, 5)
	wrongHash.Files[update.FileInitramfs] = append([]byte("X"), wrongHash.Files[update.FileInitramfs][1:]...)
	for _, tc := range []struct {
		name string
		b    *update.Bundle
		want string
	}{
		{"bad signature", bad, "bad signature: the mesh CA's signature does not verify"},
		{"older generation", bundle(t, 2), "generation not newer than the installed one: this box has generation 3"},
		{"hash mismatch", wrongHash, "initrd.img: sha256 differs from the manifest"},
	} {
		_, err := Push(context.Background(), r.admin, "edge-1", tc.b, RebootNow, nil)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Push = %v, want a refusal saying %q", tc.name, err, tc.want)
		}
		s := r.waitStatus(func(s NodeStatus) bool { return s.Phase == PhaseRefused })
		if !strings.Contains(s.Message, tc.want) {
			t.Errorf("%s: status message %q", tc.name, s.Message)
		}
	}
	if after := espTree(t, string(esp)); after != before {
		t.Fatalf("a refused push changed the ESP:\n%s\n---\n%s", before, after)
	}
	select {
	case why := <-r.reboot:
		t.Fatalf("refused push rebooted: %s", why)
	default:
	}
	if _, err := Push(context.Background(), r.admin, "edge-9", bundle(t, 4), RebootNow, nil); err == nil || !strings.Contains(err.Error(), "no update agent answers") {
		t.Fatalf("push to nobody: %v", err)
	}
}

func TestPublishReachesTargetedAgents(t *testing.T) {
	srv := natsServer(t)
	esp := freshESP(t)
	r := newRig(t, srv, esp, filepath.Join(t.TempDir(), "u.json"), "a", update.Running{Generation: 1, Release: "v1"}, time.Minute)
	// Not for this box: nothing happens.
	if err := Publish(context.Background(), r.admin, bundle(t, 2), Release{Reboot: RebootManual, Names: []string{"edge-2"}}, 1, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if s := r.agent.Snapshot(); s.Phase != PhaseIdle {
		t.Fatalf("an untargeted release changed the phase: %+v", s)
	}
	if err := Publish(context.Background(), r.admin, bundle(t, 3), Release{Reboot: RebootManual, Names: []string{"edge-1"}}, 1, nil); err != nil {
		t.Fatal(err)
	}
	s := r.waitStatus(func(s NodeStatus) bool { return s.Phase == PhaseWritten })
	if s.Target != 3 || !strings.Contains(s.Message, "reboot the box") || !s.RebootAt.IsZero() {
		t.Fatalf("status %+v", s)
	}
	got, _ := esp.ReadFile("meshnode/b/vmlinuz")
	if string(got) != "kernel 3" {
		t.Fatalf("slot b kernel %q", got)
	}
	// A bad signature published later is refused and reported.
	bad := bundle(t, 4)
	bad.Manifest.Signature[0] ^= 1
	if err := Publish(context.Background(), r.admin, bad, Release{Reboot: RebootNow}, 1, nil); err != nil {
		t.Fatal(err)
	}
	s = r.waitStatus(func(s NodeStatus) bool { return s.Phase == PhaseRefused })
	if !strings.Contains(s.Message, "bad signature: the mesh CA's signature does not verify") || s.Target != 4 {
		t.Fatalf("status %+v", s)
	}
}

// trialRig installs generation 2 from slot a and "reboots" into b on trial.
func trialRig(t *testing.T, healthy bool, deadline time.Duration) *rig {
	srv := natsServer(t)
	esp := freshESP(t)
	state := filepath.Join(t.TempDir(), "u.json")
	_, pub := testCA(t)
	box, err := update.Open(update.BoxConfig{ESP: esp, StatePath: state, Slot: "a", Running: update.Running{Generation: 1, Release: "v1"}, Arch: "amd64"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := box.Install(bundle(t, 2), pub, time.Now()); err != nil {
		t.Fatal(err)
	}
	// systemd-boot: one try used.
	if err := esp.Rename("loader/entries/meshnode-b+3.conf", "loader/entries/meshnode-b+2-1.conf"); err != nil {
		t.Fatal(err)
	}
	return newRigHealth(t, srv, esp, state, "b", update.Running{Generation: 2, Release: "v2"}, deadline, healthy)
}

func TestTrialBlessedWhenHealthy(t *testing.T) {
	r := trialRig(t, true, time.Minute)
	s := r.waitStatus(func(s NodeStatus) bool { return s.Phase == PhaseBlessed })
	if s.Generation != 2 || s.Floor != 2 || !strings.Contains(s.LastResult, "generation 2 (v2) blessed") {
		t.Fatalf("status %+v", s)
	}
	if _, err := r.esp.ReadFile("loader/entries/meshnode-b.conf"); err != nil {
		t.Fatalf("slot b not blessed: %v", err)
	}
}

func TestTrialFailsAndReboots(t *testing.T) {
	r := trialRig(t, false, 300*time.Millisecond)
	why := r.waitReboot()
	if !strings.Contains(why, "no alive member with a fresh WireGuard handshake") {
		t.Fatalf("reboot reason %q", why)
	}
	es, _ := update.Entries(r.esp)
	if es[0].Slot != "a" || es[len(es)-1].File != "meshnode-b+0-3.conf" {
		t.Fatalf("entries after a failed trial: %v", es)
	}
	// The old slot reports the rollback with the trial's reason.
	r2 := newRig(t, r.srv, r.esp, r.state, "a", update.Running{Generation: 1, Release: "v1"}, time.Minute)
	s := r2.agent.Snapshot()
	if s.Phase != PhaseRolledBack || !strings.Contains(s.Message, "was not healthy within 300ms: no alive member") {
		t.Fatalf("after the rollback: %+v", s)
	}
}

// TestReleaseDuringTrialTakenOnceBlessed: a release published while the
// slot is on trial is passed over (the only other slot is the fallback),
// then taken as soon as the trial ends blessed.
func TestReleaseDuringTrialTakenOnceBlessed(t *testing.T) {
	r := trialRig(t, false, time.Minute)
	if err := Publish(context.Background(), r.admin, bundle(t, 3), Release{Reboot: RebootManual}, 1, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if s := r.agent.Snapshot(); s.Phase != PhaseTrial {
		t.Fatalf("a release during the trial changed the phase: %+v", s)
	}
	r.node.setHealthy(true)
	s := r.waitStatus(func(s NodeStatus) bool { return s.Phase == PhaseWritten })
	if s.Target != 3 || s.Slot != "b" {
		t.Fatalf("status %+v", s)
	}
	if got, _ := r.esp.ReadFile("meshnode/a/vmlinuz"); string(got) != "kernel 3" {
		t.Fatalf("slot a kernel %q", got)
	}
}
