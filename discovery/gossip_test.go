package discovery

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// startMesh starts n members, each joining the first, and waits until
// every member sees every other one alive. It returns the nodes and the
// convergence time.
func startMesh(t *testing.T, tm *testMesh, n int) ([]*testNode, time.Duration) {
	t.Helper()
	var nodes []*testNode
	for i := range n {
		nodes = append(nodes, tm.node(fmt.Sprintf("n%d", i)))
	}
	begin := time.Now()
	for i, nd := range nodes {
		d := nd.start(t)
		if i > 0 {
			if _, err := d.Join([]netip.AddrPort{nodes[0].gossipAddrPort(t)}); err != nil {
				t.Fatalf("%s joins %s: %v", nd.name(), nodes[0].name(), err)
			}
		}
	}
	waitFor(t, 30*time.Second, "all members alive everywhere", func() bool {
		return allSee(nodes, names(nodes), StateAlive)
	})
	return nodes, time.Since(begin)
}

func TestConvergeKillLeaveRevoke(t *testing.T) {
	tm := newTestMesh(t)
	nodes, took := startMesh(t, tm, 5)
	t.Logf("5 members converged in %s (fast timers, in-process, loopback)", took.Round(time.Millisecond))
	t.Logf("node meta: %d bytes (limit %d, worst case %d)", len(nodes[0].d.localMeta), MaxMetaSize, maxMetaBytes)

	// What gossip carries is what the member signed.
	for _, m := range nodes[1].d.Members() {
		if m.Name == "n0" {
			if m.Node != nodes[0].m.ID.Public() || m.WireGuard != nodes[0].m.ID.WireGuardPublic() ||
				m.NATSRoutePort != 6222 || len(m.Endpoints) != 1 || m.Endpoints[0] != netip.MustParseAddrPort("192.0.2.1:51820") {
				t.Fatalf("n1's view of n0 is wrong: %+v", m)
			}
		}
	}

	// A meta update reaches everyone.
	newEP := netip.MustParseAddrPort("[2001:db8::7]:51820")
	phone := netip.MustParsePrefix("fd00:1:2:3::42/128")
	if err := nodes[2].d.SetLocal([]netip.AddrPort{newEP}, []netip.Prefix{phone}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "n2's new endpoint everywhere", func() bool {
		for _, n := range nodes {
			ok := false
			for _, m := range n.d.Members() {
				ok = ok || (m.Name == "n2" && slices.Equal(m.Endpoints, []netip.AddrPort{newEP}) && slices.Equal(m.Routes, []netip.Prefix{phone}))
			}
			if !ok {
				return false
			}
		}
		return true
	})

	noRejections(t, nodes)

	// Revoked on n0: gone from every other table, persisted, its gossip
	// dropped.
	r, err := tm.ca.Revoke(nodes[4].m.ID.Public(), "stolen", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].d.Revoke(r); err != nil {
		t.Fatal(err)
	}
	rest := nodes[:4]
	waitFor(t, 20*time.Second, "n4 evicted on n0..n3", func() bool {
		for _, n := range rest {
			if _, ok := stateOf(n.d, "n4"); ok || !n.revs.IsRevoked(r.Node) || !n.d.isBlocked(nodes[4].addr()) {
				return false
			}
		}
		return true
	})
	waitFor(t, 10*time.Second, "revocation persisted on n3", func() bool {
		rs, err := identity.LoadRevocations(nodes[3].config(t).RevocationsPath, tm.ca.Trust)
		return err == nil && rs.IsRevoked(r.Node)
	})
	// n4 itself hears of it (from the farewell each member sends before
	// it blocks n4), although no member gossips with it any more.
	waitFor(t, 10*time.Second, "n4 learns it is revoked", func() bool {
		return nodes[4].revs.IsRevoked(r.Node)
	})
	nodes[4].d.Shutdown()

	// Killed: n3 stops without a word and is marked dead everywhere.
	nodes[3].d.Shutdown()
	rest = nodes[:3]
	waitFor(t, 20*time.Second, "n3 dead everywhere", func() bool { return allSee(rest, []string{"n3"}, StateDead) })

	// Left: n2 announces it leaves and is marked left, not dead.
	if err := nodes[2].d.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	nodes[2].d.Shutdown()
	rest = nodes[:2]
	waitFor(t, 20*time.Second, "n2 left everywhere", func() bool { return allSee(rest, []string{"n2"}, StateLeft) })
}

func TestRestartRejoinsFromPersistedMembers(t *testing.T) {
	tm := newTestMesh(t)
	nodes := []*testNode{tm.node("r0"), tm.node("r1"), tm.node("r2")}
	for i, n := range nodes {
		cfg := n.config(t)
		if i < 2 {
			// r0 and r1 forget r2 soon after it dies, so that only r2's
			// own persisted list can bring it back.
			cfg.Retention = 300 * time.Millisecond
		}
		d, err := Start(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.d = d
		t.Cleanup(func() { d.Shutdown() })
		if i > 0 {
			if _, err := d.Join([]netip.AddrPort{nodes[0].gossipAddrPort(t)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 30*time.Second, "3 members alive", func() bool { return allSee(nodes, names(nodes), StateAlive) })
	r2 := nodes[2]
	r2.d.Shutdown()
	waitFor(t, 20*time.Second, "r0 and r1 forget r2", func() bool {
		_, ok0 := stateOf(nodes[0].d, "r2")
		_, ok1 := stateOf(nodes[1].d, "r2")
		return !ok0 && !ok1
	})
	// A revocation issued while r2 is away reaches r1 by broadcast; r2
	// can only learn it from push/pull state when it is back.
	rv, err := tm.ca.Revoke(newIdentity(t).Public(), "while r2 was away", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].d.Revoke(rv); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "r1 has the revocation", func() bool { return nodes[1].revs.IsRevoked(rv.Node) })
	// Past memberlist's own gossip to the dead (fast timers: 3 s); the
	// broadcast is long spent by then.
	time.Sleep(3500 * time.Millisecond)

	// The persisted table is all the restarted member has: no Join call.
	d, err := New(r2.config(t))
	if err != nil {
		t.Fatal(err)
	}
	known := d.Known()
	if len(known) != 2 {
		t.Fatalf("restarted r2 knows %d members before gossip, want 2: %+v", len(known), known)
	}
	for _, k := range known {
		if k.State != StateUnknown || len(k.Endpoints) != 1 {
			t.Fatalf("persisted member %s: state %s endpoints %v", k.Name, k.State, k.Endpoints)
		}
	}
	if err := d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown()
	r2.d = d
	began := time.Now()
	waitFor(t, 30*time.Second, "restarted r2 alive everywhere", func() bool { return allSee(nodes, names(nodes), StateAlive) })
	t.Logf("restarted member back in %s", time.Since(began).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "r2 learns the revocation from push/pull", func() bool { return r2.revs.IsRevoked(rv.Node) })
	noRejections(t, nodes)
}

// noRejections checks that honest members were never refused.
func noRejections(t *testing.T, nodes []*testNode) {
	t.Helper()
	for _, n := range nodes {
		if r := n.d.Rejections(); len(r) != 0 {
			t.Fatalf("%s refused honest gossip: %v", n.name(), r)
		}
	}
}

func TestSplitHeals(t *testing.T) {
	tm := newTestMesh(t)
	var split atomic.Bool
	var nodes []*testNode
	for i := range 4 {
		nodes = append(nodes, tm.node(fmt.Sprintf("s%d", i)))
	}
	side := map[netip.Addr]int{}
	for i, n := range nodes {
		side[n.addr()] = i % 2
	}
	for _, n := range nodes {
		mine := side[n.addr()]
		n.drop = func(a netip.Addr) bool {
			s, ok := side[a]
			return split.Load() && ok && s != mine
		}
	}
	for i, n := range nodes {
		d := n.start(t)
		if i > 0 {
			if _, err := d.Join([]netip.AddrPort{nodes[0].gossipAddrPort(t)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	all := names(nodes)
	waitFor(t, 30*time.Second, "4 members alive", func() bool { return allSee(nodes, all, StateAlive) })

	split.Store(true)
	even, odd := []*testNode{nodes[0], nodes[2]}, []*testNode{nodes[1], nodes[3]}
	waitFor(t, 30*time.Second, "each half sees the other dead", func() bool {
		return allSee(even, names(odd), StateDead) && allSee(odd, names(even), StateDead)
	})
	// Stay split past memberlist's own gossip to the dead, so only the
	// rejoin loop can bring the halves back together.
	time.Sleep(4 * time.Second)
	split.Store(false)
	began := time.Now()
	waitFor(t, 30*time.Second, "halves rejoined", func() bool { return allSee(nodes, all, StateAlive) })
	t.Logf("halves rejoined %s after the partition healed", time.Since(began).Round(time.Millisecond))
	noRejections(t, nodes)
}

// TestIPv6Gossip runs one member on ::1: production gossip binds an IPv6
// overlay address, and the member must admit its own IPv6 alive message.
func TestIPv6Gossip(t *testing.T) {
	ln, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	ln.Close()
	tm := newTestMesh(t)
	n := tm.node("six")
	cfg := n.config(t)
	cfg.GossipAddr = func(*identity.Ticket) netip.Addr { return netip.IPv6Loopback() }
	cfg.BindAddr = netip.Addr{}
	d, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown()
	if err := d.SetLocal([]netip.AddrPort{netip.MustParseAddrPort("[2001:db8::1]:51820")}, nil); err != nil {
		t.Fatal(err)
	}
	ml, err := d.memberlist()
	if err != nil {
		t.Fatal(err)
	}
	if got := ml.LocalNode().Addr.String(); got != "::1" {
		t.Fatalf("advertised %s", got)
	}
	noRejections(t, []*testNode{{d: d, m: n.m}})
}
