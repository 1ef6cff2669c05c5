package mesh

import (
	"crypto/ecdsa"
	"crypto/x509"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/mesh/wg"
	"github.com/meshnode/meshnode/natsnode"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func aps(ss ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range ss {
		out = append(out, ap(s))
	}
	return out
}

func TestPickEndpoint(t *testing.T) {
	const (
		v4  = "192.0.2.1:51820"
		v4b = "192.0.2.2:51820"
		v6  = "[2001:db8::1]:51820"
		v6b = "[2001:db8::2]:51820"
	)
	tests := []struct {
		name   string
		theirs []netip.AddrPort
		ours   []netip.AddrPort
		want   netip.AddrPort // zero: none
	}{
		{"v4-only box, dual member listing v6 first", aps(v6, v4), aps(v4b), ap(v4)},
		{"v6-only box, dual member listing v4 first", aps(v4, v6), aps(v6b), ap(v6)},
		{"dual box takes the member's first", aps(v6, v4), aps(v4b, v6b), ap(v6)},
		{"dual box takes the member's first (v4)", aps(v4, v6), aps(v6b, v4b), ap(v4)},
		{"we advertise nothing: the member's first", aps(v6, v4), nil, ap(v6)},
		{"no common family: the member's first anyway", aps(v6), aps(v4b), ap(v6)},
		{"v4-only member, v6-only box: its first anyway", aps(v4), aps(v6b), ap(v4)},
		{"our v4-mapped endpoint counts as v4", aps(v6, v4), aps("[::ffff:192.0.2.2]:51820"), ap(v4)},
		{"their v4-mapped endpoint counts as v4", aps(v6, "[::ffff:192.0.2.1]:51820"), aps(v4b), ap("[::ffff:192.0.2.1]:51820")},
		{"member advertises none", nil, aps(v4b, v6b), netip.AddrPort{}},
		{"nobody advertises anything", nil, nil, netip.AddrPort{}},
	}
	for _, tc := range tests {
		got, ok := pickEndpoint(tc.theirs, tc.ours)
		if got != tc.want || ok != tc.want.IsValid() {
			t.Errorf("%s: pickEndpoint = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.want.IsValid())
		}
	}
}

// testMesh issues real identities, addresses and certificates from one CA,
// so that AllowRoute sees what a TLS handshake would hand it.
type testMesh struct {
	t   *testing.T
	ca  *identity.CA
	now time.Time
}

func newTestMesh(t *testing.T) *testMesh {
	now := time.Now()
	ca, err := identity.NewCA("routes", now)
	if err != nil {
		t.Fatal(err)
	}
	return &testMesh{t: t, ca: ca, now: now}
}

// member is a member in state st, with the certificate its identity holds.
func (tm *testMesh) member(name string, st discovery.State) (discovery.Member, *x509.Certificate) {
	seed, err := identity.NewSeed()
	if err != nil {
		tm.t.Fatal(err)
	}
	id := identity.FromSeed(seed)
	nc, err := tm.ca.IssueNodeCert(name, id.Public(), tm.now, time.Hour)
	if err != nil {
		tm.t.Fatal(err)
	}
	return discovery.Member{
		Name: name, Node: id.Public(), WireGuard: id.WireGuardPublic(),
		Addr: identity.OverlayAddr(tm.ca.Trust.Prefix(), id.Public()), State: st,
	}, nc.Cert
}

// phonePrefix is the i-th /128 in the mesh prefix that no identity holds: what
// a hub advertises for a phone behind it.
func (tm *testMesh) phonePrefix(i byte) netip.Prefix {
	a := tm.ca.Trust.Prefix().Addr().As16()
	a[15] = i
	return netip.PrefixFrom(netip.AddrFrom16(a), 128)
}

// revokedSet is a Revocations the test changes after NewPlan, as gossip
// changes the node's set between reconciles.
type revokedSet map[identity.NodePublic]bool

func (r revokedSet) IsRevoked(k identity.NodePublic) bool { return r[k] }

func selfOf(m discovery.Member, port int) Self {
	// Every member of a test mesh has its address in the mesh /48.
	prefix := netip.PrefixFrom(m.Addr, 48).Masked()
	return Self{Name: m.Name, Node: m.Node, Addr: m.Addr, RoutePort: port, WireGuard: m.WireGuard, Prefix: prefix}
}

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 128) }

func TestNewPlan(t *testing.T) {
	tm := newTestMesh(t)
	self, _ := tm.member("self", discovery.StateAlive)
	alive, _ := tm.member("alive", discovery.StateAlive)
	dead, _ := tm.member("dead", discovery.StateDead)
	left, _ := tm.member("left", discovery.StateLeft)
	unknown, _ := tm.member("unknown", discovery.StateUnknown)
	revoked, _ := tm.member("revoked", discovery.StateAlive)
	hub, _ := tm.member("hub", discovery.StateAlive)
	hub.Roles = identity.RoleHub
	// Phones behind the hub: the only routes the CA allows (tickets
	// naming the hub).
	phA, phB := tm.phone("pha", hub), tm.phone("phb", hub)
	hub.Routes = []netip.Prefix{host(phA.Addr), host(phB.Addr)}
	slices.SortFunc(hub.Routes, comparePrefix) // the order the plan gives phone routes
	hub.Endpoints = aps("[2001:db8::9]:51820", "192.0.2.9:51820")
	hub.NATSRoutePort = 7222
	selfEntry := self
	selfEntry.Self = true
	otherNameSelfKey := self
	otherNameSelfKey.Name = "impostor"

	ours := aps("192.0.2.1:51820")
	selfRoute := natsnode.Member{ServerName: "self", Addr: self.Addr, RoutePort: 6333}
	route := func(m discovery.Member, port int) natsnode.Member {
		return natsnode.Member{ServerName: m.Name, Addr: m.Addr, RoutePort: port}
	}
	peer := func(m discovery.Member, ep string, extra ...netip.Prefix) wg.Peer {
		p := wg.Peer{PublicKey: m.WireGuard.Key(), AllowedIPs: append([]netip.Prefix{host(m.Addr)}, extra...), PersistentKeepalive: defaults.Keepalive}
		if ep != "" {
			p.Endpoint = ap(ep)
		}
		return p
	}

	tests := []struct {
		name        string
		members     []discovery.Member
		revoked     revokedSet
		wantMembers []string
		wantPeers   []wg.Peer
		wantRoutes  []natsnode.Member
	}{
		{
			name:       "alone: no peers, self is the one route",
			wantRoutes: []natsnode.Member{selfRoute},
		},
		{
			name:       "self is never a peer, by flag or by key",
			members:    []discovery.Member{selfEntry, otherNameSelfKey},
			wantRoutes: []natsnode.Member{selfRoute},
		},
		{
			name:        "every state is a peer, only alive is a route; default route port",
			members:     []discovery.Member{unknown, left, dead, alive},
			wantMembers: []string{"alive", "dead", "left", "unknown"},
			wantPeers:   []wg.Peer{peer(alive, ""), peer(dead, ""), peer(left, ""), peer(unknown, "")},
			wantRoutes:  []natsnode.Member{selfRoute, route(alive, defaults.NATSRoutePort)},
		},
		{
			name:        "revoked members are excluded everywhere",
			members:     []discovery.Member{alive, revoked},
			revoked:     revokedSet{revoked.Node: true},
			wantMembers: []string{"alive"},
			wantPeers:   []wg.Peer{peer(alive, "")},
			wantRoutes:  []natsnode.Member{selfRoute, route(alive, defaults.NATSRoutePort)},
		},
		{
			name:        "hub: its routes in AllowedIPs, its endpoint of our family, its route port",
			members:     []discovery.Member{hub},
			wantMembers: []string{"hub"},
			wantPeers:   []wg.Peer{peer(hub, "192.0.2.9:51820", hub.Routes...)},
			wantRoutes:  []natsnode.Member{selfRoute, route(hub, 7222)},
		},
	}
	for _, tc := range tests {
		var rev Revocations
		if tc.revoked != nil {
			rev = tc.revoked
		}
		snap := Snapshot{Self: selfOf(self, 6333), Members: tc.members, Revoked: rev, Endpoints: ours, Phones: []*identity.PhoneTicket{phA, phB}}
		p := NewPlan(snap)
		var names []string
		for _, m := range p.Members {
			names = append(names, m.Name)
		}
		if !slices.Equal(names, tc.wantMembers) {
			t.Errorf("%s: members %v, want %v", tc.name, names, tc.wantMembers)
		}
		if !reflect.DeepEqual(p.Peers, tc.wantPeers) {
			t.Errorf("%s: peers\n got %+v\nwant %+v", tc.name, p.Peers, tc.wantPeers)
		}
		if !reflect.DeepEqual(p.Routes, tc.wantRoutes) {
			t.Errorf("%s: routes\n got %+v\nwant %+v", tc.name, p.Routes, tc.wantRoutes)
		}
	}
}

// TestNewPlanDeterministic: the plan does not depend on the order in
// which discovery lists members, and NewPlan leaves its input alone.
func TestNewPlanDeterministic(t *testing.T) {
	tm := newTestMesh(t)
	self, _ := tm.member("self", discovery.StateAlive)
	var ms []discovery.Member
	for _, n := range []string{"delta", "alpha", "echo", "charlie", "bravo"} {
		m, _ := tm.member(n, discovery.StateAlive)
		m.Endpoints = aps("192.0.2.1:51820")
		ms = append(ms, m)
	}
	want := NewPlan(Snapshot{Self: selfOf(self, 6222), Members: ms})
	for i := range ms {
		rot := slices.Concat(ms[i:], ms[:i])
		before := slices.Clone(rot)
		got := NewPlan(Snapshot{Self: selfOf(self, 6222), Members: rot})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("rotation %d: plan differs", i)
		}
		if !reflect.DeepEqual(rot, before) {
			t.Fatalf("rotation %d: NewPlan reordered its input", i)
		}
	}
	var names []string
	for _, r := range want.Routes {
		names = append(names, r.ServerName)
	}
	if want := []string{"self", "alpha", "bravo", "charlie", "delta", "echo"}; !slices.Equal(names, want) {
		t.Errorf("routes %v, want self first then by name %v", names, want)
	}
}

func TestPlanAuthorizeClient(t *testing.T) {
	tm := newTestMesh(t)
	self, _ := tm.member("self", discovery.StateAlive)
	alive, _ := tm.member("alive", discovery.StateAlive)
	dead, _ := tm.member("dead", discovery.StateDead)
	left, _ := tm.member("left", discovery.StateLeft)
	unknown, _ := tm.member("unknown", discovery.StateUnknown)
	revoked, _ := tm.member("revoked", discovery.StateAlive)
	later, _ := tm.member("later", discovery.StateAlive) // revoked after the plan was built
	stranger, _ := tm.member("stranger", discovery.StateAlive)

	rev := revokedSet{revoked.Node: true}
	p := NewPlan(Snapshot{Self: selfOf(self, 6222), Members: []discovery.Member{alive, dead, left, unknown, revoked, later}, Revoked: rev})
	rev[later.Node] = true

	tests := []struct {
		name string
		key  identity.NodePublic
		want bool
	}{
		{"self", self.Node, true},
		{"alive member", alive.Node, true},
		{"dead member (still a member until forgotten)", dead.Node, true},
		{"left member (still a member until forgotten)", left.Node, true},
		{"member known only from enrollment", unknown.Node, true},
		{"revoked member", revoked.Node, false},
		{"member revoked after the plan was built", later.Node, false},
		{"stranger", stranger.Node, false},
		{"zero key", identity.NodePublic{}, false},
	}
	for _, tc := range tests {
		if got := p.AuthorizeClient(tc.key); got != tc.want {
			t.Errorf("%s: AuthorizeClient = %v, want %v", tc.name, got, tc.want)
		}
	}

	rev[self.Node] = true
	if p.AuthorizeClient(self.Node) {
		t.Error("revoked self: AuthorizeClient = true, want false")
	}
	var nilPlan *Plan
	if nilPlan.AuthorizeClient(self.Node) || nilPlan.AuthorizeClient(alive.Node) {
		t.Error("nil plan admits a client")
	}
	alone := NewPlan(Snapshot{Self: selfOf(self, 6222)})
	if !alone.AuthorizeClient(self.Node) || alone.AuthorizeClient(alive.Node) {
		t.Error("plan of self alone: want self admitted and nobody else")
	}
}

// NATS roles come from the members' CA-signed tickets (discovery.Member
// carries them); refused clients have none.
func TestPlanClientRole(t *testing.T) {
	tm := newTestMesh(t)
	self, _ := tm.member("self", discovery.StateAlive)
	admin, _ := tm.member("admin", discovery.StateAlive)
	admin.Roles = identity.RoleAdmin | identity.RoleHub
	hub, _ := tm.member("hub", discovery.StateAlive)
	hub.Roles = identity.RoleHub
	plain, _ := tm.member("plain", discovery.StateDead)
	revokedAdmin, _ := tm.member("revoked-admin", discovery.StateAlive)
	revokedAdmin.Roles = identity.RoleAdmin
	stranger, _ := tm.member("stranger", discovery.StateAlive)

	rev := revokedSet{}
	snap := Snapshot{Self: selfOf(self, 6222), Members: []discovery.Member{admin, hub, plain, revokedAdmin}, Revoked: rev}
	p := NewPlan(snap)
	rev[revokedAdmin.Node] = true
	for _, tc := range []struct {
		name string
		key  identity.NodePublic
		want natsnode.Role
	}{
		{"self without the admin role", self.Node, natsnode.RoleMember},
		{"admin", admin.Node, natsnode.RoleAdmin},
		{"hub", hub.Node, natsnode.RoleMember},
		{"dead plain member", plain.Node, natsnode.RoleMember},
		{"admin revoked after the plan was built", revokedAdmin.Node, natsnode.RoleNone},
		{"stranger", stranger.Node, natsnode.RoleNone},
	} {
		if got := p.ClientRole(tc.key); got != tc.want {
			t.Errorf("%s: ClientRole = %v, want %v", tc.name, got, tc.want)
		}
	}
	snap.Self.Roles = identity.RoleAdmin
	if got := NewPlan(snap).ClientRole(self.Node); got != natsnode.RoleAdmin {
		t.Errorf("admin self: ClientRole = %v, want admin", got)
	}
	var nilPlan *Plan
	if got := nilPlan.ClientRole(self.Node); got != natsnode.RoleNone {
		t.Errorf("nil plan: ClientRole = %v", got)
	}
}

func TestPlanAllowRoute(t *testing.T) {
	tm := newTestMesh(t)
	self, certSelf := tm.member("self", discovery.StateAlive)
	a, certA := tm.member("a", discovery.StateAlive)
	b, certB := tm.member("b", discovery.StateAlive)
	dead, certDead := tm.member("dead", discovery.StateDead)
	left, certLeft := tm.member("left", discovery.StateLeft)
	unknown, certUnknown := tm.member("unknown", discovery.StateUnknown)
	revoked, certRevoked := tm.member("revoked", discovery.StateAlive)
	later, certLater := tm.member("later", discovery.StateAlive) // revoked after the plan was built
	stranger, certStranger := tm.member("stranger", discovery.StateAlive)

	rev := revokedSet{revoked.Node: true}
	members := []discovery.Member{a, b, dead, left, unknown, revoked, later}
	p := NewPlan(Snapshot{Self: selfOf(self, 6222), Members: members, Revoked: rev})
	rev[later.Node] = true

	tests := []struct {
		name   string
		remote netip.Addr
		cert   *x509.Certificate
		want   bool
	}{
		{"member with its own certificate", a.Addr, certA, true},
		{"another member's certificate", a.Addr, certB, false},
		{"member certificate from a non-member address", stranger.Addr, certA, false},
		{"non-member with its own certificate", stranger.Addr, certStranger, false},
		{"dead member", dead.Addr, certDead, false},
		{"no certificate", a.Addr, nil, false},
		{"certificate without an Ed25519 key", a.Addr, &x509.Certificate{PublicKey: &ecdsa.PublicKey{}}, false},
		{"self with its own certificate", self.Addr, certSelf, true},
		{"self's address with a member's certificate", self.Addr, certA, false},
		{"member's address with self's certificate", a.Addr, certSelf, false},
		{"left member", left.Addr, certLeft, false},
		{"member known only from enrollment", unknown.Addr, certUnknown, false},
		{"revoked member", revoked.Addr, certRevoked, false},
		{"member revoked after the plan was built", later.Addr, certLater, false},
		{"IPv4-mapped form of nothing we know", netip.MustParseAddr("::ffff:192.0.2.1"), certA, false},
		{"invalid address", netip.Addr{}, certA, false},
	}
	for _, tc := range tests {
		if got := p.AllowRoute(tc.remote, tc.cert); got != tc.want {
			t.Errorf("%s: AllowRoute = %v, want %v", tc.name, got, tc.want)
		}
	}

	var nilPlan *Plan
	if nilPlan.AllowRoute(a.Addr, certA) || nilPlan.AllowRoute(self.Addr, certSelf) {
		t.Error("nil plan allows a route")
	}
	alone := NewPlan(Snapshot{Self: selfOf(self, 6222)})
	if !alone.AllowRoute(self.Addr, certSelf) || alone.AllowRoute(a.Addr, certA) {
		t.Error("plan of self alone: want only self's route allowed")
	}
}
