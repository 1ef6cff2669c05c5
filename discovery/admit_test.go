package discovery

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/meshnode/meshnode/identity"
)

// rogue is a node that speaks memberlist with whatever meta it likes. It
// holds the mesh's gossip key when key is set (a stolen or misbehaving
// member box: admission is what stops it), and speaks unsealed otherwise.
type rogue struct {
	name string
	addr netip.Addr
	meta []byte
	key  []byte
}

func (r *rogue) NodeMeta(int) []byte                 { return r.meta }
func (r *rogue) NotifyMsg([]byte)                    {}
func (r *rogue) GetBroadcasts(int, int) [][]byte     { return nil }
func (r *rogue) LocalState(bool) []byte              { return nil }
func (r *rogue) MergeRemoteState(buf []byte, _ bool) {}

func (r *rogue) start(t *testing.T) *memberlist.Memberlist {
	mc := memberlist.DefaultLocalConfig()
	mc.Name = r.name
	mc.BindAddr, mc.BindPort = r.addr.String(), testPort(t)
	mc.AdvertiseAddr, mc.AdvertisePort = r.addr.String(), testPort(t)
	mc.Label = "testmesh"
	mc.PushPullInterval = 300 * time.Millisecond
	mc.ProbeInterval = 200 * time.Millisecond
	mc.Delegate = r
	mc.LogOutput = io.Discard
	if r.key != nil {
		mc.SecretKey = r.key
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Shutdown() })
	return ml
}

// signedMeta signs a meta for ticket t with id, whatever t says.
func signedMeta(t testing.TB, id *identity.Identity, tk *identity.Ticket) []byte {
	t.Helper()
	m := &meta{ticket: tk, seq: uint64(time.Now().UnixNano()), natsClientPort: 4222, natsRoutePort: 6222}
	b, err := m.sign(id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAdmissionRefusesBadNodes(t *testing.T) {
	tm := newTestMesh(t)
	good, _ := startMesh(t, tm, 2)
	cases, rev := badCases(t, tm)
	for _, g := range good {
		if err := g.d.Revoke(rev); err != nil {
			t.Fatal(err)
		}
	}
	key := tm.gossipKey()
	for reason, r := range cases {
		r.key = key // members' boxes: they hold the key, admission must stop them
		ml := r.start(t)
		// The join itself is refused by the merge delegate; periodic
		// push/pull and gossip then meet the alive delegate.
		_, err := ml.Join([]string{good[0].gossipAddrPort(t).String(), good[1].gossipAddrPort(t).String()})
		t.Logf("%s: rogue %q join: %v", reason, r.name, err)
	}
	for reason := range cases {
		waitFor(t, 20*time.Second, "both members count "+reason, func() bool {
			return good[0].d.Rejections()[reason] > 0 && good[1].d.Rejections()[reason] > 0
		})
	}
	for _, g := range good {
		for _, m := range g.d.Members() {
			if m.Name != "n0" && m.Name != "n1" {
				t.Errorf("%s admitted %q (%s)", g.name(), m.Name, m.State)
			}
		}
	}
}

// badCases builds one rogue per rejection reason: the memberlist name,
// address and meta it presents.
func badCases(t *testing.T, tm *testMesh) (map[string]*rogue, *identity.Revocation) {
	now := time.Now()
	out := map[string]*rogue{}
	valid := func(name string) (*identity.Member, []byte) {
		m := tm.enroll(name, 0)
		return m, signedMeta(t, m.ID, m.Ticket)
	}
	addr := func(m *identity.Member) netip.Addr { return testGossipAddr(m.Ticket) }

	m, _ := valid("forged")
	forged := *m.Ticket
	forged.Roles = identity.RoleAdmin // the CA never signed this
	out[RejectBadCASignature] = &rogue{"forged", addr(m), signedMeta(t, m.ID, &forged), nil}

	m = tm.enroll("expired", 0)
	exp, err := tm.ca.IssueTicket("expired", m.ID.Public(), m.ID.WireGuardPublic(), 0, now.Add(-100*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out[RejectExpired] = &rogue{"expired", addr(m), signedMeta(t, m.ID, exp), nil}

	m, b := valid("revoked")
	out[RejectRevoked] = &rogue{"revoked", addr(m), b, nil}
	rev, err := tm.ca.Revoke(m.ID.Public(), "test", now)
	if err != nil {
		t.Fatal(err)
	}

	other := newTestMesh(t) // same mesh name, another CA
	fm := other.enroll("foreign", 0)
	out[RejectForeignCA] = &rogue{"foreign", addr(fm), signedMeta(t, fm.ID, fm.Ticket), nil}

	m, b = valid("badsig")
	b[len(b)-1] ^= 1
	out[RejectBadMetaSignature] = &rogue{"badsig", addr(m), b, nil}

	m, b = valid("named")
	out[RejectNameMismatch] = &rogue{"alias", addr(m), b, nil}

	m, b = valid("moved")
	seed, _ := identity.NewSeed()
	out[RejectAddressMismatch] = &rogue{"moved", assignAddr(identity.FromSeed(seed).Public()), b, nil}

	m = tm.enroll("inward", 0)
	out[RejectInternalEndpoint] = &rogue{"inward", addr(m), metaWithEndpoints(t, m, netip.MustParseAddrPort("127.0.0.1:22")), nil}

	out[RejectMalformed] = &rogue{"garbage", assignAddr(identity.NodePublic{1}), []byte{1, 0, 200, 1, 2, 3}, nil}
	return out, rev
}

// TestAliveDelegate drives the alive delegate directly, one case per
// reason, and checks that a valid node passes and a newer meta is needed.
func TestAliveDelegate(t *testing.T) {
	tm := newTestMesh(t)
	n := tm.node("judge")
	d, err := New(n.config(t))
	if err != nil {
		t.Fatal(err)
	}
	cases, rev := badCases(t, tm)
	if err := d.Revoke(rev); err != nil {
		t.Fatal(err)
	}
	for reason, r := range cases {
		err := (*delegate)(d).NotifyAlive(&memberlist.Node{Name: r.name, Addr: net.IP(r.addr.AsSlice()), Meta: r.meta})
		ae, ok := err.(*admitError)
		if !ok || ae.reason != reason {
			t.Errorf("%s: got %v", reason, err)
		}
		if d.Rejections()[reason] != 1 {
			t.Errorf("%s counted %d times", reason, d.Rejections()[reason])
		}
	}

	m := tm.enroll("fine", 0)
	node := func(b []byte) *memberlist.Node {
		return &memberlist.Node{Name: "fine", Addr: net.IP(testGossipAddr(m.Ticket).AsSlice()), Meta: b}
	}
	older := signedMeta(t, m.ID, m.Ticket)
	newer := signedMeta(t, m.ID, m.Ticket)
	if err := (*delegate)(d).NotifyAlive(node(newer)); err != nil {
		t.Fatalf("valid node refused: %v", err)
	}
	(*events)(d).NotifyJoin(node(newer))
	if st, ok := stateOf(d, "fine"); !ok || st != StateAlive {
		t.Fatalf("valid node not in table: %v %v", st, ok)
	}
	if err := (*delegate)(d).NotifyAlive(node(older)); err == nil || err.(*admitError).reason != RejectStaleMeta {
		t.Fatalf("replayed older meta: got %v", err)
	}

	// A join from a side where nothing is admissible is refused whole;
	// one bad node among good ones does not block the merge.
	bad := cases[RejectForeignCA]
	badNode := &memberlist.Node{Name: bad.name, Addr: net.IP(bad.addr.AsSlice()), Meta: bad.meta, State: memberlist.StateAlive}
	if err := (*delegate)(d).NotifyMerge([]*memberlist.Node{badNode}); err == nil {
		t.Fatal("merge with a foreign node accepted")
	}
	goodNode := node(newer)
	goodNode.State = memberlist.StateAlive
	if err := (*delegate)(d).NotifyMerge([]*memberlist.Node{badNode, goodNode}); err != nil {
		t.Fatalf("merge with one good node refused: %v", err)
	}
}

// metaWithEndpoints is m's signed meta advertising eps.
func metaWithEndpoints(t testing.TB, m *identity.Member, eps ...netip.AddrPort) []byte {
	t.Helper()
	md := &meta{ticket: m.Ticket, seq: uint64(time.Now().UnixNano()), natsClientPort: 4222, natsRoutePort: 6222, endpoints: eps}
	b, err := md.sign(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Issue 14 finding 6: a member could advertise loopback, link-local and
// other internal endpoints, and every node would send it handshakes
// there. Refused unless the mesh is a lab on one host.
func TestAdmissionInternalEndpoints(t *testing.T) {
	tm := newTestMesh(t)
	m := tm.enroll("inward", 0)
	inMesh := netip.AddrPortFrom(identity.OverlayAddr(tm.ca.Trust.Prefix(), identity.NodePublic{9}), 51820)
	for _, tc := range []struct {
		ep   string
		lab  bool
		want string // "" = admitted
	}{
		{"127.0.0.1:51820", false, RejectInternalEndpoint},
		{"[::1]:51820", false, RejectInternalEndpoint},
		{"169.254.169.254:80", false, RejectInternalEndpoint},
		{"224.0.0.1:51820", false, RejectInternalEndpoint},
		{"[ff02::1]:51820", false, RejectInternalEndpoint},
		{"255.255.255.255:51820", false, RejectInternalEndpoint},
		{"0.1.2.3:51820", false, RejectInternalEndpoint},
		{inMesh.String(), false, RejectInternalEndpoint},
		{"10.1.2.3:51820", false, ""},
		{"192.168.1.2:51820", false, ""},
		{"[fd00::1]:51820", false, ""},
		{"198.51.100.7:51820", false, ""},
		{"127.0.0.1:51820", true, ""},
		{"169.254.1.1:51820", true, ""},
	} {
		n := tm.node("judge")
		cfg := n.config(t)
		cfg.LabEndpoints = tc.lab
		d, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b := metaWithEndpoints(t, m, netip.MustParseAddrPort(tc.ep))
		err = (*delegate)(d).NotifyAlive(&memberlist.Node{Name: "inward", Addr: net.IP(testGossipAddr(m.Ticket).AsSlice()), Meta: b})
		got := ""
		if ae, ok := err.(*admitError); ok {
			got = ae.reason
		} else if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("endpoint %s (lab %v): %q, want %q", tc.ep, tc.lab, got, tc.want)
		}
	}
}
