package mesh

import (
	"crypto/x509"
	"reflect"
	"testing"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/natsnode"
)

// TestPlanCoreLeaf: the route set holds core members only, a leaf gets
// the alive core members as its leaf remotes and no routes, routes come
// only from core members and leaf connections only from leaf members;
// a mesh without any core ticket is all core (the old full mesh).
func TestPlanCoreLeaf(t *testing.T) {
	tm := newTestMesh(t)
	mk := func(name string, st discovery.State, roles identity.Roles) (discovery.Member, *x509.Certificate) {
		m, c := tm.member(name, st)
		m.Roles = roles
		return m, c
	}
	core := identity.RoleCore
	selfCore, certSelfCore := mk("self", discovery.StateAlive, core)
	selfLeaf, _ := mk("self-leaf", discovery.StateAlive, 0)
	a, certA := mk("a", discovery.StateAlive, core|identity.RoleAdmin)
	b, _ := mk("b", discovery.StateDead, core)
	c, certC := mk("c", discovery.StateAlive, core)
	l1, certL1 := mk("l1", discovery.StateAlive, 0)
	l2, certL2 := mk("l2", discovery.StateDead, 0)
	revokedCore, _ := mk("rc", discovery.StateAlive, core)
	legacyA, _ := mk("a", discovery.StateAlive, identity.RoleAdmin)
	legacyL, _ := mk("l1", discovery.StateAlive, 0)

	route := func(m discovery.Member) natsnode.Member {
		return natsnode.Member{ServerName: m.Name, Addr: m.Addr, RoutePort: defaults.NATSRoutePort}
	}
	remote := func(m discovery.Member, port int) natsnode.Member {
		r := route(m)
		r.LeafPort = port
		return r
	}
	selfRoute := func(m discovery.Member) natsnode.Member {
		return natsnode.Member{ServerName: m.Name, Addr: m.Addr, RoutePort: 6222}
	}
	for _, tc := range []struct {
		name        string
		self        discovery.Member
		leafPort    int
		members     []discovery.Member
		wantCore    bool
		wantRoutes  []natsnode.Member
		wantRemotes []natsnode.Member
		routesFrom  []conn // AllowRoute true; every other alive member false
		leavesFrom  []conn // AllowLeaf true; every other alive member false
	}{
		{
			name: "core member: routes to alive core members, leaves from alive leaves",
			self: selfCore, members: []discovery.Member{a, b, c, l1, l2, revokedCore},
			wantCore:   true,
			wantRoutes: []natsnode.Member{selfRoute(selfCore), route(a), route(c)},
			routesFrom: []conn{{a, certA}, {c, certC}, {selfCore, certSelfCore}},
			leavesFrom: []conn{{l1, certL1}},
		},
		{
			name: "leaf member: no routes, the alive core members as remotes",
			self: selfLeaf, leafPort: 7500, members: []discovery.Member{a, b, c, l1, l2, revokedCore},
			wantCore:    false,
			wantRemotes: []natsnode.Member{remote(a, 7500), remote(c, 7500)},
		},
		{
			name: "leaf member, default leaf port",
			self: selfLeaf, members: []discovery.Member{c, l1},
			wantRemotes: []natsnode.Member{remote(c, defaults.NATSLeafPort)},
		},
		{
			name: "leaf member whose core is all dead: no remote yet, still a leaf",
			self: selfLeaf, members: []discovery.Member{b, l1},
		},
		{
			name: "a mesh without core tickets is all core",
			self: selfLeaf, members: []discovery.Member{legacyA, legacyL, l2},
			wantCore:   true,
			wantRoutes: []natsnode.Member{selfRoute(selfLeaf), route(legacyA), route(legacyL)},
		},
		{
			name: "a revoked core member does not make a mesh core",
			self: selfLeaf, members: []discovery.Member{legacyA, revokedCore},
			wantCore:   true,
			wantRoutes: []natsnode.Member{selfRoute(selfLeaf), route(legacyA)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			self := selfOf(tc.self, 6222)
			self.Roles, self.LeafPort = tc.self.Roles, tc.leafPort
			p := NewPlan(Snapshot{Self: self, Members: tc.members, Revoked: revokedSet{revokedCore.Node: true}})
			if p.Core != tc.wantCore {
				t.Errorf("Core = %v, want %v", p.Core, tc.wantCore)
			}
			if !reflect.DeepEqual(p.Routes, tc.wantRoutes) {
				t.Errorf("routes\n got %+v\nwant %+v", p.Routes, tc.wantRoutes)
			}
			if !reflect.DeepEqual(p.LeafRemotes, tc.wantRemotes) {
				t.Errorf("leaf remotes\n got %+v\nwant %+v", p.LeafRemotes, tc.wantRemotes)
			}
			for _, c := range tc.routesFrom {
				if !p.AllowRoute(c.m.Addr, c.cert) {
					t.Errorf("route from %s refused", c.m.Name)
				}
			}
			for _, c := range tc.leavesFrom {
				if !p.AllowLeaf(c.m.Addr, c.cert) {
					t.Errorf("leaf connection from %s refused", c.m.Name)
				}
			}
			for _, c := range []conn{{a, certA}, {c, certC}, {l1, certL1}, {l2, certL2}} {
				if !hasConn(tc.routesFrom, c.m) && p.AllowRoute(c.m.Addr, c.cert) {
					t.Errorf("route from %s allowed", c.m.Name)
				}
				if !hasConn(tc.leavesFrom, c.m) && p.AllowLeaf(c.m.Addr, c.cert) {
					t.Errorf("leaf connection from %s allowed", c.m.Name)
				}
			}
			// One member's certificate never carries another's connection.
			if p.AllowLeaf(l1.Addr, certA) || p.AllowRoute(a.Addr, certL1) {
				t.Errorf("a connection with another member's certificate allowed")
			}
		})
	}
	var nilPlan *Plan
	if nilPlan.AllowLeaf(l1.Addr, certL1) {
		t.Error("nil plan allows a leaf connection")
	}
}

type conn struct {
	m    discovery.Member
	cert *x509.Certificate
}

func hasConn(cs []conn, m discovery.Member) bool {
	for _, c := range cs {
		if c.m.Node == m.Node {
			return true
		}
	}
	return false
}

// TestBootstrapExpect: in a mesh with core members only core members
// join the meta group, so bootstrap_expect is at most max_core.
func TestBootstrapExpect(t *testing.T) {
	for _, c := range []struct {
		expect, maxCore int
		coreMesh        bool
		want            int
	}{
		{3, 5, true, 3},
		{3, 2, true, 2},
		{3, 1, true, 1},
		{3, 2, false, 3}, // all core: every member counts
		{1, 5, true, 1},
		{3, 0, true, 3},
	} {
		if got := bootstrapExpect(c.expect, c.maxCore, c.coreMesh); got != c.want {
			t.Errorf("bootstrapExpect(%d, %d, %v) = %d, want %d", c.expect, c.maxCore, c.coreMesh, got, c.want)
		}
	}
}
