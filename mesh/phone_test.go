package mesh

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/natsnode"
)

func (tm *testMesh) phone(name string, hubs ...discovery.Member) *identity.PhoneTicket {
	tm.t.Helper()
	seed, err := identity.NewSeed()
	if err != nil {
		tm.t.Fatal(err)
	}
	var keys []identity.NodePublic
	for _, h := range hubs {
		keys = append(keys, h.Node)
	}
	pub, sub := identity.DefaultPhoneSubjects(name)
	pt, err := tm.ca.IssuePhoneTicket(name, identity.FromSeed(seed), keys, pub, sub, tm.now, time.Hour)
	if err != nil {
		tm.t.Fatal(err)
	}
	return pt
}

func allowedOf(p *Plan, name string) []netip.Prefix {
	for i, m := range p.Members {
		if m.Name == name {
			return p.Peers[i].AllowedIPs
		}
	}
	return nil
}

// TestPlanPhones: the hub peers with its phone and forwards for it; every
// other member routes the phone's /128 through exactly one hub the ticket
// names: the one that advertises the phone, else the first alive, and a
// member's meta cannot pull a phone's route onto a hub the ticket does not
// name. Phones are admitted to NATS as RolePhone until revoked.
func TestPlanPhones(t *testing.T) {
	tm := newTestMesh(t)
	hub1, _ := tm.member("hub1", discovery.StateAlive)
	hub2, _ := tm.member("hub2", discovery.StateAlive)
	other, _ := tm.member("other", discovery.StateAlive)
	ph := tm.phone("pixel", hub1, hub2)
	p128 := host(ph.Addr)

	// On hub1: a phone peer with the /128, no endpoint; forwarding on;
	// no member peer holds the /128.
	onHub := NewPlan(Snapshot{Self: selfOf(hub1, 6222), Members: []discovery.Member{hub2, other}, Phones: []*identity.PhoneTicket{ph}})
	all := onHub.AllPeers()
	if len(all) != 3 || all[2].PublicKey != ph.WireGuard.Key() || !slices.Equal(all[2].AllowedIPs, []netip.Prefix{p128}) || all[2].Endpoint.IsValid() {
		t.Fatalf("hub peers: %+v", all)
	}
	if !slices.Equal(onHub.LocalPhones(), []netip.Addr{ph.Addr}) {
		t.Errorf("LocalPhones %v", onHub.LocalPhones())
	}
	for _, m := range []string{"hub2", "other"} {
		if slices.Contains(allowedOf(onHub, m), p128) {
			t.Errorf("on the hub, member %s also holds the phone's /128", m)
		}
	}

	// On another member: through the first alive hub…
	snap := func(members ...discovery.Member) *Plan {
		return NewPlan(Snapshot{Self: selfOf(other, 6222), Members: members, Phones: []*identity.PhoneTicket{ph}})
	}
	p := snap(hub1, hub2)
	if !slices.Contains(allowedOf(p, "hub1"), p128) || slices.Contains(allowedOf(p, "hub2"), p128) {
		t.Errorf("default route: hub1 %v hub2 %v", allowedOf(p, "hub1"), allowedOf(p, "hub2"))
	}
	if len(p.LocalPhones()) != 0 || len(p.AllPeers()) != 2 {
		t.Errorf("a non-hub peers with or forwards for the phone")
	}
	// …or the one that advertises it (the phone uses hub2's tunnel)…
	h2 := hub2
	h2.Routes = []netip.Prefix{p128}
	p = snap(hub1, h2)
	if slices.Contains(allowedOf(p, "hub1"), p128) || !slices.Contains(allowedOf(p, "hub2"), p128) {
		t.Errorf("advertised route: hub1 %v hub2 %v", allowedOf(p, "hub1"), allowedOf(p, "hub2"))
	}
	// …or the second when the first is dead.
	h1dead := hub1
	h1dead.State = discovery.StateDead
	p = snap(h1dead, hub2)
	if !slices.Contains(allowedOf(p, "hub2"), p128) {
		t.Errorf("failover: hub2 %v", allowedOf(p, "hub2"))
	}
	// A member the ticket does not name cannot claim the phone.
	thief, _ := tm.member("thief", discovery.StateAlive)
	thief.Routes = []netip.Prefix{p128}
	p = snap(hub1, thief)
	if slices.Contains(allowedOf(p, "thief"), p128) || !slices.Contains(allowedOf(p, "hub1"), p128) {
		t.Errorf("thief %v hub1 %v", allowedOf(p, "thief"), allowedOf(p, "hub1"))
	}
	if _, err := normalizeOK(p); err != nil {
		t.Errorf("plan peers do not apply: %v", err)
	}

	// NATS: a phone is admitted as RolePhone, until revoked.
	revs := revokedSet{}
	p = NewPlan(Snapshot{Self: selfOf(other, 6222), Members: []discovery.Member{hub1}, Phones: []*identity.PhoneTicket{ph}, Revoked: revs})
	if !p.AuthorizeClient(ph.Node) || p.ClientRole(ph.Node) != natsnode.RolePhone {
		t.Errorf("phone: authorize %v role %v", p.AuthorizeClient(ph.Node), p.ClientRole(ph.Node))
	}
	if p.ClientRole(hub1.Node) != natsnode.RoleMember {
		t.Errorf("hub1's role %v", p.ClientRole(hub1.Node))
	}
	if _, ok := p.phoneTicket(ph.Node); !ok {
		t.Error("no grant for the phone")
	}
	revs[ph.Node] = true
	if p.AuthorizeClient(ph.Node) || p.ClientRole(ph.Node) != natsnode.RoleNone {
		t.Error("a revoked phone is still admitted")
	}
	if _, ok := p.phoneTicket(ph.Node); ok {
		t.Error("a revoked phone still has a grant")
	}
	if p2 := NewPlan(Snapshot{Self: selfOf(other, 6222), Members: []discovery.Member{hub1}, Phones: []*identity.PhoneTicket{ph}, Revoked: revs}); slices.Contains(allowedOf(p2, "hub1"), p128) {
		t.Error("a revoked phone is still routed")
	}
}

// normalizeOK reports whether the plan's peers would pass wg.Apply's
// checks (no prefix claimed twice).
func normalizeOK(p *Plan) (int, error) {
	seen := map[netip.Prefix]bool{}
	for _, peer := range p.AllPeers() {
		for _, ip := range peer.AllowedIPs {
			if seen[ip] {
				return 0, &dupErr{ip}
			}
			seen[ip] = true
		}
	}
	return len(seen), nil
}

type dupErr struct{ p netip.Prefix }

func (e *dupErr) Error() string { return e.p.String() + " claimed twice" }

func TestPhoneEndpoint(t *testing.T) {
	for _, c := range []struct {
		eps  []netip.AddrPort
		want string
	}{
		{aps("10.0.0.1:51820", "203.0.113.5:51820"), "203.0.113.5:51820"},
		{aps("[2001:db8::1]:51820", "203.0.113.5:51820"), "203.0.113.5:51820"},
		{aps("10.0.0.1:51820", "[2001:db8::1]:51820"), "[2001:db8::1]:51820"},
		{aps("10.0.0.1:51820"), "10.0.0.1:51820"},
		{aps("[::ffff:10.0.0.1]:51820"), "10.0.0.1:51820"},
	} {
		if got := phoneEndpoint(c.eps).String(); got != c.want {
			t.Errorf("phoneEndpoint(%v) = %s, want %s", c.eps, got, c.want)
		}
	}
}
