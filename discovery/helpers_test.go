package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// Every test node gossips on its own loopback address (127.77.x.y), all on
// one port chosen per test binary: no root, no clash between tests.
var (
	testAddrs   sync.Map // identity.NodePublic → netip.Addr
	nextAddr    atomic.Uint32
	portOnce    sync.Once
	gossipPort  int
	testLogging = os.Getenv("DISCOVERY_TEST_LOG") != ""
)

func testPort(t testing.TB) int {
	portOnce.Do(func() {
		for range 20 {
			ln, err := net.Listen("tcp", "127.77.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			p := ln.Addr().(*net.TCPAddr).Port
			ln.Close()
			pc, err := net.ListenPacket("udp", fmt.Sprintf("127.77.0.1:%d", p))
			if err == nil {
				pc.Close()
				gossipPort = p
				return
			}
		}
		t.Fatal("no free gossip port")
	})
	return gossipPort
}

func assignAddr(node identity.NodePublic) netip.Addr {
	if a, ok := testAddrs.Load(node); ok {
		return a.(netip.Addr)
	}
	n := nextAddr.Add(1)
	a := netip.AddrFrom4([4]byte{127, 77, byte(1 + n/250), byte(1 + n%250)})
	testAddrs.Store(node, a)
	return a
}

func testGossipAddr(t *identity.Ticket) netip.Addr {
	if a, ok := testAddrs.Load(t.Node); ok {
		return a.(netip.Addr)
	}
	return netip.Addr{}
}

func testLogger(t testing.TB, name string) *slog.Logger {
	if !testLogging {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
}

type testMesh struct {
	t   testing.TB
	ca  *identity.CA
	now time.Time
}

func newTestMesh(t testing.TB) *testMesh {
	ca, err := identity.NewCA("testmesh", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &testMesh{t: t, ca: ca, now: time.Now()}
}

// enroll makes a fresh identity and enrolls it with the mesh CA.
func (tm *testMesh) enroll(name string, roles identity.Roles) *identity.Member {
	tm.t.Helper()
	seed, err := identity.NewSeed()
	if err != nil {
		tm.t.Fatal(err)
	}
	id := identity.FromSeed(seed)
	e, err := tm.ca.Enroll(name, id.Public(), id.WireGuardPublic(), roles, tm.now)
	if err != nil {
		tm.t.Fatal(err)
	}
	tk, err := identity.ParseTicket(e.Ticket)
	if err != nil {
		tm.t.Fatal(err)
	}
	nc, err := identity.ParseNodeCert(e.NodeCertPEM, tm.ca.Trust, tm.now)
	if err != nil {
		tm.t.Fatal(err)
	}
	assignAddr(id.Public())
	return &identity.Member{ID: id, Trust: tm.ca.Trust, Ticket: tk, Cert: nc, RouteSecret: "0123456789abcdef0123456789abcdef"}
}

// testNode is one member: its identity, state directory and (when
// running) its Discovery.
type testNode struct {
	m    *identity.Member
	dir  string
	revs *identity.RevocationSet
	drop func(netip.Addr) bool
	d    *Discovery
}

func (tm *testMesh) node(name string) *testNode {
	m := tm.enroll(name, 0)
	return &testNode{m: m, dir: tm.t.TempDir(), revs: identity.NewRevocationSet(m.Trust)}
}

func (n *testNode) addr() netip.Addr { return testGossipAddr(n.m.Ticket) }
func (n *testNode) name() string     { return n.m.Ticket.Name }

func (n *testNode) config(t testing.TB) Config {
	return Config{
		Member:          n.m,
		Revocations:     n.revs,
		RevocationsPath: filepath.Join(n.dir, "revocations.bin"),
		MembersPath:     filepath.Join(n.dir, "members.json"),
		Port:            testPort(t),
		Endpoints:       []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:51820")},
		NATSClientPort:  4222,
		NATSRoutePort:   6222,
		GossipAddr:      testGossipAddr,
		Fast:            true,
		Logger:          testLogger(t, n.name()),
		drop:            n.drop,
	}
}

func (n *testNode) start(t testing.TB) *Discovery {
	t.Helper()
	d, err := Start(context.Background(), n.config(t))
	if err != nil {
		t.Fatal(err)
	}
	n.d = d
	t.Cleanup(func() { d.Shutdown() })
	return d
}

func (n *testNode) gossipAddrPort(t testing.TB) netip.AddrPort {
	return netip.AddrPortFrom(n.addr(), uint16(testPort(t)))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stateOf is what d believes about the member called name ("" = absent).
func stateOf(d *Discovery, name string) (State, bool) {
	for _, m := range d.Members() {
		if m.Name == name {
			return m.State, true
		}
	}
	return 0, false
}

// allSee reports whether every node sees every name in the given state.
func allSee(nodes []*testNode, names []string, s State) bool {
	for _, n := range nodes {
		for _, name := range names {
			if st, ok := stateOf(n.d, name); !ok || st != s {
				return false
			}
		}
	}
	return true
}

func names(nodes []*testNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.name())
	}
	return out
}

func newIdentity(t testing.TB) *identity.Identity {
	seed, err := identity.NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	return identity.FromSeed(seed)
}
