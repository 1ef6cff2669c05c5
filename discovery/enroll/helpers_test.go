package enroll

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

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
)

// The endpoint is tested against a real member table: a discovery that is
// created (no network) or, where gossip matters, started on a loopback
// address of its own (127.78.x.y) and a port chosen per test binary. No
// root is needed.
var (
	testAddrs   sync.Map // identity.NodePublic → netip.Addr
	nextAddr    atomic.Uint32
	portOnce    sync.Once
	gossipPort  int
	testLogging = os.Getenv("ENROLL_TEST_LOG") != ""
)

func testPort(t testing.TB) int {
	portOnce.Do(func() {
		for range 20 {
			ln, err := net.Listen("tcp", "127.78.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			p := ln.Addr().(*net.TCPAddr).Port
			ln.Close()
			pc, err := net.ListenPacket("udp", fmt.Sprintf("127.78.0.1:%d", p))
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
	a := netip.AddrFrom4([4]byte{127, 78, byte(1 + n/250), byte(1 + n%250)})
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
	id := newIdentity(tm.t)
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

// stateOf is what d believes about the member called name.
func stateOf(d *discovery.Discovery, name string) (discovery.State, bool) {
	for _, m := range d.Members() {
		if m.Name == name {
			return m.State, true
		}
	}
	return 0, false
}
