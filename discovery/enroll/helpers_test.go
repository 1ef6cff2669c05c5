package enroll

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/discovery/discoverytest"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/identity/identitytest"
	"github.com/meshnode/meshnode/mesh/meshtest"
)

// The endpoint is tested against a real member table: a discovery that is
// created (no network) or, where gossip matters, started on a loopback
// address of its own (127.78.x.y) and a port chosen per test binary. No
// root is needed.
var lo = &discoverytest.Loopback{Net: 78}

func testPort(t testing.TB) int                      { return lo.Port(t) }
func assignAddr(node identity.NodePublic) netip.Addr { return lo.Assign(node) }
func testGossipAddr(t *identity.Ticket) netip.Addr   { return lo.GossipAddr(t) }
func testLogger(t testing.TB, name string) *slog.Logger {
	return discoverytest.Logger("ENROLL_TEST_LOG", name)
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

// discoveryConfig is a member's discovery with its state in dir.
func (tm *testMesh) discoveryConfig(t testing.TB, m *identity.Member, revs *identity.RevocationSet, dir string) discovery.Config {
	return discovery.Config{
		Member:          m,
		Revocations:     revs,
		RevocationsPath: filepath.Join(dir, "revocations.bin"),
		MembersPath:     filepath.Join(dir, "members.json"),
		Port:            testPort(t),
		Endpoints:       []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:51820")},
		NATSClientPort:  4222,
		NATSRoutePort:   6222,
		GossipAddr:      testGossipAddr,
		Fast:            true,
		Logger:          testLogger(t, m.Ticket.Name),
	}
}

// startGossip runs a member's discovery on its loopback address.
func (tm *testMesh) startGossip(t testing.TB, m *identity.Member, revs *identity.RevocationSet, dir string) *discovery.Discovery {
	t.Helper()
	d, err := discovery.Start(context.Background(), tm.discoveryConfig(t, m, revs, dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Shutdown() })
	return d
}

func newIdentity(t testing.TB) *identity.Identity {
	seed, err := identity.NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	return identity.FromSeed(seed)
}

// waitFor polls cond with a deadline (meshtest.WaitFor).
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	meshtest.WaitFor(t, timeout, what, cond)
}

// stateOf is what d believes about the member called name.
func stateOf(d *discovery.Discovery, name string) (discovery.State, bool) {
	for _, m := range d.Members() {
		if m.Name == name {
			return m.State, true
		}
	}
	return 0, false
}
