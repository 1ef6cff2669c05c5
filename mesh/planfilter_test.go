package mesh

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/wg"
	"github.com/meshnode/meshnode/natsnode"
)

func names(ms []discovery.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func dropLines(p *Plan) []string {
	var out []string
	for _, d := range p.Dropped {
		out = append(out, d.String())
	}
	return out
}

// issued sets when a member's ticket was issued (precedence: older first).
func issued(m discovery.Member, t time.Time) discovery.Member {
	m.TicketIssued = t
	return m
}

// Issue 14 finding 1: a member carrying another member's WireGuard key
// (admitted before joins proved the key) made every Apply fail with
// "listed twice", so no peer change reached the device on any node. The
// plan drops the younger claimant, the same one on every node, and the
// rest of the peer set is one wg.Apply accepts.
func TestNewPlanDropsCollisions(t *testing.T) {
	tm := newTestMesh(t)
	t0 := tm.now.Add(-time.Hour)
	self, _ := tm.member("self", discovery.StateAlive)
	victim, _ := tm.member("victim", discovery.StateAlive)
	victim = issued(victim, t0)
	impostor, _ := tm.member("impostor", discovery.StateAlive)
	impostor = issued(impostor, t0.Add(time.Minute))
	impostor.WireGuard = victim.WireGuard
	later, _ := tm.member("later", discovery.StateAlive)
	later = issued(later, t0.Add(2*time.Minute))
	selfKey, _ := tm.member("selfkey", discovery.StateAlive)
	selfKey.WireGuard = self.WireGuard // older than anyone: self still wins
	clone := victim                    // the victim's identity under a second name
	clone.Name, clone.TicketIssued = "aclone", t0.Add(time.Second)
	clone.WireGuard = later.WireGuard // and a key that is someone else's
	sameAge, _ := tm.member("b-same", discovery.StateAlive)
	sameAge = issued(sameAge, t0)
	sameAge2, _ := tm.member("a-same", discovery.StateAlive)
	sameAge2 = issued(sameAge2, t0)
	sameAge2.WireGuard = sameAge.WireGuard
	noKey, _ := tm.member("nokey", discovery.StateAlive)
	noKey.WireGuard = identity.WireGuardPublic{}

	tests := []struct {
		name    string
		members []discovery.Member
		want    []string // Members, by name
		drops   []string
	}{
		{
			name:    "copied key: the younger ticket is dropped, the newcomer after it is a peer",
			members: []discovery.Member{impostor, later, victim},
			want:    []string{"later", "victim"},
			drops:   []string{"member impostor dropped from WireGuard: its WireGuard key is also used by member victim"},
		},
		{
			name:    "a member with this node's key is dropped, never this node",
			members: []discovery.Member{selfKey, victim},
			want:    []string{"victim"},
			drops:   []string{"member selfkey dropped from WireGuard: its WireGuard key is also used by this node"},
		},
		{
			name:    "a copied state directory (one seed, two names): the younger entry is dropped",
			members: []discovery.Member{victim, issued(func() discovery.Member { c := victim; c.Name = "zclone"; return c }(), t0.Add(time.Second))},
			want:    []string{"victim"},
			drops:   []string{"member zclone dropped from WireGuard: its WireGuard key is also used by member victim"},
		},
		{
			name:    "a clone carrying another member's key: dropped, and that member keeps its key",
			members: []discovery.Member{victim, later, clone},
			want:    []string{"later", "victim"},
			drops:   []string{fmt.Sprintf("member aclone dropped from WireGuard: its overlay address %s is also used by member victim", victim.Addr)},
		},
		{
			name:    "tickets of the same age: the lower name keeps the key",
			members: []discovery.Member{sameAge, sameAge2},
			want:    []string{"a-same"},
			drops:   []string{"member b-same dropped from WireGuard: its WireGuard key is also used by member a-same"},
		},
		{
			name:    "a member without a WireGuard key is dropped",
			members: []discovery.Member{noKey, victim},
			want:    []string{"victim"},
			drops:   []string{"member nokey dropped from WireGuard: it has no WireGuard key"},
		},
	}
	for _, tc := range tests {
		p := NewPlan(Snapshot{Self: selfOf(self, 6222), Members: tc.members})
		if got := names(p.Members); !slices.Equal(got, tc.want) {
			t.Errorf("%s: members %v, want %v", tc.name, got, tc.want)
		}
		if got := dropLines(p); !slices.Equal(got, tc.drops) {
			t.Errorf("%s: drops\n got %q\nwant %q", tc.name, got, tc.drops)
		}
		if err := wg.CheckPeers(p.Peers); err != nil {
			t.Errorf("%s: the peer set would fail Apply: %v", tc.name, err)
		}
		if len(p.Peers) != len(p.Members) {
			t.Errorf("%s: %d peers for %d members", tc.name, len(p.Peers), len(p.Members))
		}
		// A dropped member is out of NATS too: its entry is not trusted.
		for _, d := range p.Dropped {
			if !d.Route.IsValid() && slices.ContainsFunc(p.Routes, func(r natsnode.Member) bool { return r.ServerName == d.Member }) {
				t.Errorf("%s: dropped member %s is a NATS route", tc.name, d.Member)
			}
		}
	}
	// Every node decides the same, whatever order its table lists.
	ms := []discovery.Member{impostor, later, victim, selfKey, sameAge, sameAge2}
	want := NewPlan(Snapshot{Self: selfOf(self, 6222), Members: ms})
	for i := range ms {
		got := NewPlan(Snapshot{Self: selfOf(self, 6222), Members: slices.Concat(ms[i:], ms[:i])})
		if !slices.Equal(names(got.Members), names(want.Members)) || !slices.Equal(dropLines(got), dropLines(want)) {
			t.Fatalf("rotation %d: %v %q, want %v %q", i, names(got.Members), dropLines(got), names(want.Members), dropLines(want))
		}
	}
}

// Issue 14 finding 1: meta routes were accepted from any member, default
// routes included. Only a hub's /128s inside the mesh prefix that are no
// member's address are routed through it.
func TestNewPlanRoutes(t *testing.T) {
	tm := newTestMesh(t)
	t0 := tm.now.Add(-time.Hour)
	self, _ := tm.member("self", discovery.StateAlive)
	other, _ := tm.member("other", discovery.StateAlive)
	victim, _ := tm.member("victim", discovery.StateAlive)
	victim = issued(victim, t0)
	impostor, _ := tm.member("impostor", discovery.StateAlive)
	impostor = issued(impostor, t0.Add(time.Minute))
	impostor.WireGuard = victim.WireGuard
	mp := netip.MustParsePrefix
	hub, _ := tm.member("hub", discovery.StateAlive)
	hub = issued(hub, t0)
	hub.Roles = identity.RoleHub
	hub2, _ := tm.member("hub2", discovery.StateAlive)
	hub2 = issued(hub2, t0.Add(time.Minute))
	hub2.Roles = identity.RoleHub
	plain, _ := tm.member("plain", discovery.StateAlive)
	// The CA's word on routes: phone tickets naming their hubs.
	ph1, ph2, ph3, ph4 := tm.phone("ph1", hub), tm.phone("ph2", hub, hub2), tm.phone("ph3", hub2), tm.phone("ph4", hub)
	phones := []*identity.PhoneTicket{ph1, ph2, ph3, ph4}
	hub.Routes = []netip.Prefix{
		mp("::/0"), mp("0.0.0.0/0"), mp("10.0.0.0/8"), mp("2001:db8::1/128"),
		tm.ca.Trust.Prefix(), netip.PrefixFrom(tm.phonePrefix(9).Addr(), 64).Masked(),
		host(other.Addr), host(self.Addr), host(impostor.Addr),
		host(ph1.Addr), host(ph1.Addr), host(ph2.Addr), tm.phonePrefix(5), // no ticket for the last
	}
	hub2.Routes = []netip.Prefix{host(ph2.Addr), host(ph3.Addr)}
	plain.Routes = []netip.Prefix{host(ph4.Addr)} // ph4's ticket names hub, not plain

	in := []discovery.Member{hub, hub2, plain, other, victim, impostor}
	before := make([][]netip.Prefix, len(in))
	for i, m := range in {
		before[i] = slices.Clone(m.Routes)
	}
	p := NewPlan(Snapshot{Self: selfOf(self, 6222), Members: in, Phones: phones})
	for i, m := range in {
		if !slices.Equal(m.Routes, before[i]) {
			t.Fatalf("NewPlan changed the routes of its input %s", m.Name)
		}
	}
	if err := wg.CheckPeers(p.Peers); err != nil {
		t.Fatalf("the peer set would fail Apply: %v", err)
	}
	allowed := map[string][]netip.Prefix{}
	for i, m := range p.Members {
		allowed[m.Name] = p.Peers[i].AllowedIPs
	}
	check := func(name string, want ...netip.Prefix) {
		t.Helper()
		got := slices.Clone(allowed[name])
		slices.SortFunc(got, comparePrefix)
		slices.SortFunc(want, comparePrefix)
		if !slices.Equal(got, want) {
			t.Errorf("%s: AllowedIPs %v, want %v", name, got, want)
		}
	}
	// ph2 names both hubs and both advertise it: it goes on exactly one
	// (planPhones picks), not dropped as a conflict.
	check("hub", host(hub.Addr), host(ph1.Addr), host(ph2.Addr), host(ph4.Addr)) // ph4 by its ticket, not plain's word
	check("hub2", host(hub2.Addr), host(ph3.Addr))
	check("plain", host(plain.Addr))
	check("other", host(other.Addr))

	prefix := tm.ca.Trust.Prefix()
	notInMesh := "only /128s inside the mesh prefix " + prefix.String() + " are routed through a hub"
	wantDrops := map[string]string{
		"::/0": notInMesh, "0.0.0.0/0": notInMesh, "10.0.0.0/8": notInMesh, "2001:db8::1/128": notInMesh,
		prefix.String(): notInMesh, netip.PrefixFrom(tm.phonePrefix(9).Addr(), 64).Masked().String(): notInMesh,
		host(other.Addr).String():    "it is the overlay address of member other",
		host(self.Addr).String():     "it is the overlay address of this node",
		host(impostor.Addr).String(): "it is the overlay address of member impostor",
		tm.phonePrefix(5).String():   "no phone ticket names hub as its hub",
	}
	seen := 0
	for _, d := range p.Dropped {
		switch {
		case !d.Route.IsValid():
			if d.Member != "impostor" {
				t.Errorf("unexpected drop %s", d)
			}
		case d.Member == "hub":
			if want, ok := wantDrops[d.Route.String()]; !ok || d.Reason != want {
				t.Errorf("hub route %s: reason %q, want %q", d.Route, d.Reason, want)
			}
			seen++
		case d.Member == "plain":
			if d.Route != host(ph4.Addr) || d.Reason != "no phone ticket names plain as its hub" {
				t.Errorf("plain: %s", d)
			}
		default:
			t.Errorf("unexpected drop %s", d)
		}
	}
	if seen != len(wantDrops) {
		t.Errorf("%d of the hub's routes dropped, want %d: %q", seen, len(wantDrops), dropLines(p))
	}
}

// FuzzNewPlanPeers: whatever the member table holds (keys, addresses and
// routes shared at random), the plan's peer set is one wg.Apply accepts,
// self is never dropped, and every member is either a peer or dropped.
func FuzzNewPlanPeers(f *testing.F) {
	f.Add(uint64(1), uint8(6))
	f.Add(uint64(42), uint8(20))
	ca, err := identity.NewCA("fuzz", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	prefix := ca.Trust.Prefix()
	// Keys and addresses are computed once: the fuzzer varies only who
	// claims what.
	type key struct {
		node identity.NodePublic
		wg   identity.WireGuardPublic
		addr netip.Addr
	}
	ids := make([]key, 8)
	for i := range ids {
		id := identity.FromSeed(identity.Seed{byte(i + 1)})
		ids[i] = key{id.Public(), id.WireGuardPublic(), identity.OverlayAddr(prefix, id.Public())}
	}
	f.Fuzz(func(t *testing.T, seed uint64, n uint8) {
		r := rand.New(rand.NewPCG(seed, seed>>7))
		pick := func() key { return ids[r.IntN(len(ids))] }
		self := ids[0]
		s := Snapshot{Self: Self{Name: "self", Node: self.node, Addr: self.addr, WireGuard: self.wg, Prefix: prefix}}
		for range int(n % 32) {
			id, wgid := pick(), pick()
			m := discovery.Member{Name: fmt.Sprintf("m%d", r.IntN(12)), Node: id.node, WireGuard: wgid.wg,
				Addr: id.addr, State: discovery.StateAlive,
				TicketIssued: time.Unix(int64(r.IntN(4)), 0)}
			if r.IntN(2) == 0 {
				m.Roles = identity.RoleHub
			}
			for range r.IntN(4) {
				a := prefix.Addr().As16()
				a[15] = byte(r.IntN(4))
				switch r.IntN(4) {
				case 0:
					m.Routes = append(m.Routes, netip.PrefixFrom(netip.AddrFrom16(a), 128))
				case 1:
					m.Routes = append(m.Routes, netip.PrefixFrom(pick().addr, 128))
				case 2:
					m.Routes = append(m.Routes, netip.MustParsePrefix("::/0"))
				case 3:
					m.Routes = append(m.Routes, netip.PrefixFrom(netip.AddrFrom16(a), 64).Masked())
				}
			}
			s.Members = append(s.Members, m)
		}
		p := NewPlan(s)
		selfKey := self.wg.Key()
		if err := wg.CheckPeers(p.Peers); err != nil {
			t.Fatalf("peer set fails Apply: %v\nmembers %+v", err, s.Members)
		}
		for _, pe := range p.Peers {
			if pe.PublicKey == selfKey {
				t.Fatal("this node's key is a peer")
			}
		}
	})
}

// A drop is logged when it appears, not on every reconcile, and shows in
// status and metrics for as long as it lasts.
func TestDropsReported(t *testing.T) {
	dir := identity.StateDir(t.TempDir())
	if _, err := dir.InitMesh("drops", "self", 0, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	n, err := New(Config{StateDir: dir}, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	tm := newTestMesh(t)
	victim, _ := tm.member("victim", discovery.StateAlive)
	victim = issued(victim, tm.now.Add(-time.Hour))
	impostor, _ := tm.member("impostor", discovery.StateAlive)
	impostor.WireGuard = victim.WireGuard
	impostor.TicketIssued = tm.now

	snap := n.snapshot()
	snap.Members = []discovery.Member{victim, impostor}
	for range 3 { // what reconcile does every 5 s
		p := NewPlan(snap)
		n.plan.Store(p)
		n.drops.note(n.log, p.Dropped)
	}
	if c := strings.Count(logged.String(), "member left out of WireGuard"); c != 1 {
		t.Errorf("logged %d times in 3 reconciles, want once:\n%s", c, logged.String())
	}
	want := "member impostor dropped from WireGuard: its WireGuard key is also used by member victim"
	if st := n.Status(); !slices.Contains(st.Problems, want) || st.Healthy {
		t.Errorf("status problems %q (healthy %v), want %q", st.Problems, st.Healthy, want)
	}
	if ms := n.metricsSnapshot(time.Now()); ms.WireGuard.DroppedMembers != 1 || ms.WireGuard.DroppedRoutes != 0 {
		t.Errorf("metrics: dropped %d members, %d routes; want 1, 0", ms.WireGuard.DroppedMembers, ms.WireGuard.DroppedRoutes)
	}
	// Resolved, then back: logged again.
	n.drops.note(n.log, nil)
	n.drops.note(n.log, NewPlan(snap).Dropped)
	if c := strings.Count(logged.String(), "member left out of WireGuard"); c != 2 {
		t.Errorf("a drop that came back was logged %d times in all, want 2", c)
	}
}
