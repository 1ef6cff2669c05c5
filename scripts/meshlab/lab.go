// Package meshlab runs meshes of real meshnode processes, one per network
// namespace on one bridge: the one harness behind the demo (scripts/demo),
// the end-to-end tests (cmd/meshnode) and the benchmarks
// (scripts/bench/meshbench). It builds on scripts/netns, which stays free
// of product code. The meshnode binary never links it.
package meshlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/mesh/wg"
	"github.com/meshnode/meshnode/scripts/netns"
)

// Lab is a mesh of real meshnode processes, one per network namespace, all
// on one bridge. Every namespace, interface and process it starts (nodes
// and helpers) is removed by Close, processes by PID.
type Lab struct {
	Bin    string // the meshnode binary
	Dir    string // state directories and logs live below it
	Bridge *netns.Bridge
	Nodes  []*Node
	// Fast makes nodes use short gossip timers.
	Fast bool
	// MaxCore, when above 0, is Launch's `init --max-core` (how many
	// members are NATS core members); 0 leaves meshnode's default.
	MaxCore int

	mu      sync.Mutex
	helpers []*helper // see Node.Spawn
	// nats are the routers of AddNAT.
	nats []*netns.NAT
}

// Node is one box of the lab.
type Node struct {
	lab   *Lab
	Name  string
	NS    *netns.NS
	IP    string // underlay address on eth0
	Iface string // WireGuard interface (unique on the host)
	State string // state directory
	Log   string // the node's log file
	// Addr is the node's overlay address, recorded by Status once the
	// daemon has answered (WaitUp, WaitComplete). It derives from the
	// node's identity, so it never changes.
	Addr string
	cmd  *exec.Cmd
	done chan error
}

// New creates the bridge. bin is the meshnode binary to run.
func New(bin, dir string) (*Lab, error) {
	br, err := netns.CreateBridge()
	if err != nil {
		return nil, err
	}
	return &Lab{Bin: bin, Dir: dir, Bridge: br}, nil
}

// AddNode creates a namespace on the bridge for a node called name.
func (l *Lab) AddNode(name string) (*Node, error) {
	ns, err := netns.Create("mn")
	if err != nil {
		return nil, err
	}
	i := len(l.Nodes) + 1
	n := &Node{
		lab: l, Name: name, NS: ns, IP: fmt.Sprintf("10.231.0.%d", i),
		Iface: netns.Unique("mw"), State: filepath.Join(l.Dir, name),
		Log: filepath.Join(l.Dir, name+".log"),
	}
	l.Nodes = append(l.Nodes, n)
	if err := l.Bridge.Connect(ns, "eth0", n.IP+"/24"); err != nil {
		return nil, err
	}
	return n, nil
}

// Close stops every helper and every node (SIGKILL by PID if SIGINT or
// SIGTERM is not enough) and removes every namespace, and the UAPI socket
// a node killed by the test left behind (the socket directory is the
// host's, not the namespace's).
func (l *Lab) Close() {
	l.stopHelpers()
	for _, n := range l.Nodes {
		n.Stop(3 * time.Second)
		n.NS.Delete()
		os.Remove(filepath.Join(wg.SocketDir, n.Iface+".sock"))
	}
	l.closeNATs()
	if l.Bridge != nil {
		l.Bridge.Delete()
	}
}

// Endpoint is the node's WireGuard underlay endpoint.
func (n *Node) Endpoint() string { return net.JoinHostPort(n.IP, strconv.Itoa(defaults.ListenPort)) }

// EnrollAddr is where the node's enrollment endpoint listens.
func (n *Node) EnrollAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(defaults.EnrollPort)) }

// Meshnode runs a meshnode subcommand inside the node's namespace and
// returns its stdout; stderr is in the error.
func (n *Node) Meshnode(args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := n.NS.Command(n.lab.Bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: meshnode %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (n *Node) nodeFlags() []string {
	f := []string{"--state", n.State, "--iface", n.Iface, "--endpoint", n.Endpoint(), "--enroll-addr", n.EnrollAddr()}
	if n.lab.Fast {
		f = append(f, "--fast-timers")
	}
	return f
}

// Init creates a new mesh with this node as its first member.
func (n *Node) Init(meshName string, extra ...string) error {
	args := append([]string{"init", "--name", n.Name, "--mesh", meshName}, n.nodeFlags()...)
	_, err := n.Meshnode(append(args, extra...)...)
	return err
}

// Up starts the daemon in the background.
func (n *Node) Up(extra ...string) error {
	return n.start(append(append([]string{"up"}, n.nodeFlags()...), extra...))
}

// Join starts `meshnode join` toward admin in the background: it enrolls,
// then runs the node like up.
func (n *Node) Join(admin *Node, token string, extra ...string) error {
	args := append([]string{"join", admin.EnrollAddr(), "--token", token, "--name", n.Name}, n.nodeFlags()...)
	return n.start(append(args, extra...))
}

func (n *Node) start(args []string) error {
	if n.cmd != nil {
		return fmt.Errorf("%s: already running (pid %d)", n.Name, n.cmd.Process.Pid)
	}
	// ip netns exec execs the binary, so the PID is meshnode's own.
	cmd := n.NS.Command(n.lab.Bin, args...)
	done, err := n.lab.startLogged(cmd, n.Log, "=== meshnode "+strings.Join(args, " ")+"\n")
	if err != nil {
		return err
	}
	n.cmd, n.done = cmd, done
	return nil
}

// Running reports whether the node's process is still alive.
func (n *Node) Running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case err := <-n.done:
		n.done <- err // keep it for Wait
		return false
	default:
		return true
	}
}

// PID is the node process's PID (0 when not running).
func (n *Node) PID() int {
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Wait waits for the node's process to exit and returns its error.
func (n *Node) Wait(timeout time.Duration) error {
	if n.cmd == nil {
		return errors.New(n.Name + ": not started")
	}
	select {
	case err := <-n.done:
		n.cmd = nil
		return err
	case <-time.After(timeout):
		return fmt.Errorf("%s: still running after %s", n.Name, timeout)
	}
}

// Kill sends SIGKILL: a crash, with nothing cleaned up.
func (n *Node) Kill() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	n.cmd = nil
}

// Stop sends SIGTERM (graceful leave) and SIGKILL after timeout.
func (n *Node) Stop(timeout time.Duration) {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(timeout):
		n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
	}
	n.cmd = nil
}

// Status asks the node's daemon for its status.
func (n *Node) Status() (*api.Status, error) {
	cmd := n.NS.Command(n.lab.Bin, "status", "--json", "--state", n.State)
	out, err := cmd.Output()
	var st api.Status
	if jerr := json.Unmarshal(out, &st); jerr != nil {
		if err == nil {
			err = jerr
		}
		return nil, fmt.Errorf("%s: status: %w", n.Name, err)
	}
	if st.Addr.IsValid() {
		n.Addr = st.Addr.String()
	}
	return &st, nil
}

// Complete reports whether the node sees every other lab node alive with a
// WireGuard handshake and all NATS routes up; when not, it says why.
func (n *Node) Complete(want int) (bool, string) {
	st, err := n.Status()
	if err != nil {
		return false, err.Error()
	}
	alive := 0
	var missing []string // what the others lack, for the message
	for _, m := range st.Members {
		// A relayed member (Via) has no handshake of its own: its hub's counts.
		switch {
		case m.State != api.StateAlive:
			missing = append(missing, fmt.Sprintf("%s %s", m.Name, m.State))
		case m.LastHandshake.IsZero() && m.Via == "":
			missing = append(missing, m.Name+" no handshake")
		default:
			alive++
		}
	}
	if alive != want-1 {
		why := ""
		if len(missing) > 0 {
			why = " (" + strings.Join(missing, ", ") + ")"
		}
		return false, fmt.Sprintf("%s sees %d of %d members alive with a handshake%s", n.Name, alive, want-1, why)
	}
	if st.NATS.Role == api.NATSRoleLeaf {
		if st.NATS.LeafOf == "" {
			return false, fmt.Sprintf("%s: NATS leaf not connected to any of %d core members", n.Name, st.NATS.LeafCore)
		}
		return true, ""
	}
	routes := coreRoutes(st, want)
	if st.NATS.RoutesExpected != routes || st.NATS.RoutesUp != routes {
		return false, fmt.Sprintf("%s: NATS routes %d/%d, want %d", n.Name, st.NATS.RoutesUp, st.NATS.RoutesExpected, routes)
	}
	return true, ""
}

// coreRoutes is how many NATS routes a core node of a complete mesh of
// want nodes has: one per other core member, or per other member in a
// mesh without core members (all core).
func coreRoutes(st *api.Status, want int) int {
	core := 0
	for _, m := range st.Members {
		if m.Roles.Has(identity.RoleCore) {
			core++
		}
	}
	if core == 0 && !st.Roles.Has(identity.RoleCore) {
		return want - 1
	}
	return core
}

// WaitComplete polls until every running node is Complete, or ctx ends; the
// error then says what was still missing.
func (l *Lab) WaitComplete(ctx context.Context) error {
	var why string
	for {
		ok := true
		for _, n := range l.Nodes {
			if c, w := n.Complete(len(l.Nodes)); !c {
				ok, why = false, w
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mesh not complete: %s", why)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Tails returns the last lines of every node's log, each under a header
// naming the node, for failure messages.
func (l *Lab) Tails(lines int) string {
	var b strings.Builder
	for _, n := range l.Nodes {
		fmt.Fprintf(&b, "--- %s log tail:\n%s\n", n.Name, n.Tail(lines))
	}
	return b.String()
}

// Tail returns the last n lines of the node's log, for failure messages.
func (n *Node) Tail(lines int) string {
	b, _ := os.ReadFile(n.Log)
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// WaitUp polls until the node's daemon answers its local API.
func (n *Node) WaitUp(ctx context.Context) error {
	for {
		if _, err := n.Status(); err == nil {
			return nil
		}
		if !n.Running() {
			return fmt.Errorf("%s exited before it was up:\n%s", n.Name, n.Tail(20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not up: %w\n%s", n.Name, ctx.Err(), n.Tail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Invite mints a join token on an admin node.
func (n *Node) Invite(extra ...string) (string, error) {
	out, err := n.Meshnode(append([]string{"invite", "--state", n.State}, extra...)...)
	return strings.TrimSpace(out), err
}

// StartMesh creates one node per name and starts the mesh (see Launch). It
// returns once every daemon answers (not once the mesh is complete: see
// WaitComplete).
func (l *Lab) StartMesh(ctx context.Context, meshName string, names []string) error {
	if err := l.Launch(ctx, meshName, names, nil); err != nil {
		return err
	}
	for _, n := range l.Nodes[1:] {
		if err := n.WaitUp(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Launch creates one node per name and starts the mesh the way an operator
// does: the first node inits it (bootstrap_expect min(len(names), 3),
// MaxCore if set) and
// runs `up`; once it answers, a token is minted for every other node and
// their `meshnode join`s are started back to back, so a time-to-mesh
// measurement sees every joiner at once. joined, when not nil, is called
// right after each join has started, with the time it was started. Launch
// does not wait for the joiners: see WaitUp and WaitComplete.
func (l *Lab) Launch(ctx context.Context, meshName string, names []string, joined func(n *Node, started time.Time)) error {
	if len(names) == 0 {
		return errors.New("no nodes")
	}
	expect := fmt.Sprint(min(len(names), 3))
	for _, name := range names {
		if _, err := l.AddNode(name); err != nil {
			return err
		}
	}
	first := l.Nodes[0]
	initArgs := []string{"--bootstrap-expect", expect}
	if l.MaxCore > 0 {
		initArgs = append(initArgs, "--max-core", strconv.Itoa(l.MaxCore))
	}
	if err := first.Init(meshName, initArgs...); err != nil {
		return err
	}
	if err := first.Up(); err != nil {
		return err
	}
	if err := first.WaitUp(ctx); err != nil {
		return err
	}
	joiners := l.Nodes[1:]
	tokens := make([]string, len(joiners))
	for i := range joiners {
		var err error
		if tokens[i], err = first.Invite(); err != nil {
			return err
		}
	}
	for i, n := range joiners {
		started := time.Now()
		if err := n.Join(first, tokens[i], "--bootstrap-expect", expect); err != nil {
			return err
		}
		if joined != nil {
			joined(n, started)
		}
	}
	return nil
}

// SendAcross subscribes on to, publishes msg on from until the subscriber
// gets it (route interest takes a moment to propagate), and returns what
// the subscriber printed.
func (l *Lab) SendAcross(ctx context.Context, from, to *Node, subject, msg string) (string, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(30 * time.Second)
	}
	timeout := time.Until(dl).Round(time.Second).String()
	var out, errb bytes.Buffer
	sub := to.NS.Command(l.Bin, "nats", "--state", to.State, "--timeout", timeout, "sub", subject, "1")
	sub.Stdout, sub.Stderr = &out, &errb
	if err := sub.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- sub.Wait() }()
	for {
		if _, err := from.Meshnode("nats", "--state", from.State, "pub", subject, msg); err != nil {
			sub.Process.Kill()
			<-done
			return "", err
		}
		select {
		case err := <-done:
			if err != nil {
				return "", fmt.Errorf("subscriber on %s: %w: %s", to.Name, err, strings.TrimSpace(errb.String()))
			}
			return strings.TrimSpace(out.String()), nil
		case <-ctx.Done():
			sub.Process.Kill()
			<-done
			return "", fmt.Errorf("no message from %s reached %s: %w", from.Name, to.Name, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}
