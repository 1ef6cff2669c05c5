package discovery

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshnode/meshnode/discovery/discoverytest"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/identity/identitytest"
	"github.com/meshnode/meshnode/mesh/meshtest"
)

// Every test node gossips on its own loopback address (127.77.x.y), all on
// one port chosen per test binary: no root, no clash between tests.
var lo = &discoverytest.Loopback{Net: 77}

func testPort(t testing.TB) int                      { return lo.Port(t) }
func assignAddr(node identity.NodePublic) netip.Addr { return lo.Assign(node) }
func testGossipAddr(t *identity.Ticket) netip.Addr   { return lo.GossipAddr(t) }
func testLogger(t testing.TB, name string) *slog.Logger {
	return discoverytest.Logger("DISCOVERY_TEST_LOG", name)
}

// testMesh is the shared CA fixture, bound to a test.
type testMesh struct {
	t  testing.TB
	ca *identity.CA
	m  *identitytest.Mesh
}

func newTestMesh(t testing.TB) *testMesh {
	m := identitytest.NewMesh(t, "testmesh")
	return &testMesh{t: t, ca: m.CA, m: m}
}

// enroll makes a fresh identity, enrolls it with the mesh CA and gives it
// a loopback address.
func (tm *testMesh) enroll(name string, roles identity.Roles) *identity.Member {
	tm.t.Helper()
	m := tm.m.Member(tm.t, name, roles)
	assignAddr(m.ID.Public())
	return m
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
		GossipKeysPath:  filepath.Join(n.dir, "gossip.keys"),
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

// waitFor polls cond with a deadline (meshtest.WaitFor).
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	meshtest.WaitFor(t, timeout, what, cond)
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
