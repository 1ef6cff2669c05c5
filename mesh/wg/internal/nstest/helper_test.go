package nstest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/mesh/wg"
	"github.com/meshnode/meshnode/scripts/netns"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// The helper process: opens one Device from its environment, then serves
// one JSON request per stdin line with one JSON reply per stdout line.

type request struct {
	Op    string       // apply, peers, close; cutoff, stats; listen, dial, echo, block, await (tcp.go)
	Peers []wg.Peer    `json:",omitempty"`
	Addrs []netip.Addr `json:",omitempty"` // cutoff
	// Addr is where listen listens and dial dials.
	Addr netip.AddrPort `json:",omitempty"`
	Conn int            `json:",omitempty"` // echo, block, await: a connection dial returned
	// Wait bounds await.
	Wait time.Duration `json:",omitempty"`
}

type reply struct {
	Err     string         `json:",omitempty"`
	Changes wg.Changes     `json:",omitempty"`
	Peers   []wg.PeerStats `json:",omitempty"`
	Stats   wg.CutOffStats `json:",omitempty"`
	Conn    int            `json:",omitempty"`
	// ConnErr is how a socket operation failed (errnoName), when that is
	// the expected outcome rather than a helper error.
	ConnErr string `json:",omitempty"`
	// Elapsed is, for dial and await, how long after the last cutoff
	// request the socket operation failed.
	Elapsed time.Duration `json:",omitempty"`
}

func TestMain(m *testing.M) {
	if os.Getenv("NSTEST_HELPER") == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

func helperMain() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	key, err := wgtypes.ParseKey(os.Getenv("NSTEST_KEY"))
	if err != nil {
		fmt.Printf("{\"Err\":%q}\n", err.Error())
		return 1
	}
	addr, err1 := netip.ParseAddr(os.Getenv("NSTEST_ADDR"))
	prefix, err2 := netip.ParsePrefix(os.Getenv("NSTEST_PREFIX"))
	if err1 != nil || err2 != nil {
		fmt.Printf("{\"Err\":\"bad address or prefix\"}\n")
		return 1
	}
	dev, err := wg.Open(wg.Config{Name: os.Getenv("NSTEST_IFACE"), PrivateKey: key, Address: addr, Prefix: prefix, Logger: log})
	enc := json.NewEncoder(os.Stdout)
	if err != nil {
		enc.Encode(reply{Err: err.Error()})
		return 1
	}
	enc.Encode(reply{})
	tcp := newTCPState()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 1<<20)
	for in.Scan() {
		var req request
		var rep reply
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			rep.Err = err.Error()
		}
		switch req.Op {
		case "apply":
			rep.Changes, err = dev.Apply(req.Peers)
		case "peers":
			rep.Peers, err = dev.Peers()
		case "close":
			err = dev.Close()
		case "cutoff":
			tcp.cutAt = time.Now()
			dev.SetCutOff(req.Addrs)
		case "stats":
			rep.Stats = dev.CutOffStats()
		case "listen", "dial", "echo", "block", "await":
			err = tcp.handle(req, &rep)
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			rep.Err = err.Error()
		}
		enc.Encode(rep)
		if req.Op == "close" {
			return 0
		}
	}
	dev.Close()
	return 0
}

// holder is the test's handle on one helper process.
type holder struct {
	t      *testing.T
	ns     *netns.NS
	iface  string
	key    wgtypes.Key
	addr   netip.Addr
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *json.Decoder
	stderr *syncBuffer
	exited chan struct{}
}

// syncBuffer collects a helper's stderr. exec copies the pipe into it from
// its own goroutine while the test may read it (a failure message, a log
// line check), so both sides take mu.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs a helper in ns holding interface iface. It returns the
// helper and the error Open reported (nil when the device is up).
func start(t *testing.T, ns *netns.NS, iface string, key wgtypes.Key, addr netip.Addr, prefix netip.Prefix) (*holder, error) {
	t.Helper()
	h := &holder{t: t, ns: ns, iface: iface, key: key, addr: addr, stderr: &syncBuffer{}, exited: make(chan struct{})}
	h.cmd = ns.Command(os.Args[0], "-test.run=^$")
	h.cmd.Env = append(os.Environ(),
		"NSTEST_HELPER=1",
		"NSTEST_IFACE="+iface,
		"NSTEST_KEY="+key.String(),
		"NSTEST_ADDR="+addr.String(),
		"NSTEST_PREFIX="+prefix.String(),
	)
	h.cmd.Stderr = h.stderr
	var err error
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.cmd.Wait(); close(h.exited) }()
	// ip netns exec execs the helper in place, so this PID is the holder.
	t.Cleanup(h.kill)
	h.out = json.NewDecoder(stdout)
	var rep reply
	if err := h.read(&rep); err != nil {
		t.Fatalf("helper for %s: %v\nstderr:\n%s", iface, err, h.stderr)
	}
	if rep.Err != "" {
		h.wait()
		return h, fmt.Errorf("%s", rep.Err)
	}
	return h, nil
}

// read decodes one reply, failing after a deadline instead of hanging.
func (h *holder) read(rep *reply) error {
	done := make(chan error, 1)
	go func() { done <- h.out.Decode(rep) }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		h.kill()
		return fmt.Errorf("no reply from helper within 30s")
	}
}

func (h *holder) call(req request) reply {
	h.t.Helper()
	b, _ := json.Marshal(req)
	if _, err := h.stdin.Write(append(b, '\n')); err != nil {
		h.t.Fatalf("helper %s: write: %v\nstderr:\n%s", h.iface, err, h.stderr)
	}
	var rep reply
	if err := h.read(&rep); err != nil {
		h.t.Fatalf("helper %s: %s: %v\nstderr:\n%s", h.iface, req.Op, err, h.stderr)
	}
	if rep.Err != "" {
		h.t.Fatalf("helper %s: %s: %s\nstderr:\n%s", h.iface, req.Op, rep.Err, h.stderr)
	}
	return rep
}

func (h *holder) apply(peers ...wg.Peer) wg.Changes {
	h.t.Helper()
	if peers == nil {
		peers = []wg.Peer{}
	}
	return h.call(request{Op: "apply", Peers: peers}).Changes
}

func (h *holder) cutoff(addrs ...netip.Addr) {
	h.t.Helper()
	h.call(request{Op: "cutoff", Addrs: addrs})
}

func (h *holder) stats() wg.CutOffStats {
	h.t.Helper()
	return h.call(request{Op: "stats"}).Stats
}

func (h *holder) peers() []wg.PeerStats {
	h.t.Helper()
	return h.call(request{Op: "peers"}).Peers
}

func (h *holder) close() {
	h.t.Helper()
	h.call(request{Op: "close"})
	h.wait()
	if strings.Contains(h.stderr.String(), "stopped accepting") {
		h.t.Errorf("helper %s: UAPI socket stopped serving before Close:\n%s", h.iface, h.stderr)
	}
}

func (h *holder) wait() {
	h.t.Helper()
	select {
	case <-h.exited:
	case <-time.After(30 * time.Second):
		h.kill()
		h.t.Fatalf("helper %s did not exit", h.iface)
	}
}

// kill sends SIGKILL to the helper by PID, like a crash.
func (h *holder) kill() {
	select {
	case <-h.exited:
		return
	default:
	}
	h.cmd.Process.Kill()
	<-h.exited
}
