package mesh

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/wg"
)

// The plan moves a relayed member's addresses, whole, onto its hub's peer,
// keeps the member's own peer (no AllowedIPs) at the probed endpoint, and
// keeps every other member direct; the result is a peer set wg.Apply takes
// (no prefix on two peers).
func TestPlanRelaysThroughHub(t *testing.T) {
	tm := newTestMesh(t)
	self, _ := tm.member("self", discovery.StateAlive)
	hub, _ := tm.member("hub1", discovery.StateAlive)
	hub.Roles = identity.RoleHub
	hub.Endpoints = aps("192.0.2.9:51820")
	far, _ := tm.member("far", discovery.StateAlive)
	far.Endpoints = aps("198.51.100.7:40001", "192.168.7.2:51820")
	near, _ := tm.member("near", discovery.StateAlive)
	near.Endpoints = aps("198.51.100.8:51820")
	probe := ap("192.168.7.2:51820")
	s := Snapshot{
		Self: selfOf(self, 6222), Members: []discovery.Member{hub, far, near}, Endpoints: aps("192.0.2.1:51820"),
		Paths: map[identity.NodePublic]Path{
			far.Node:  {Kind: PathRelay, Via: hub.Node, ViaName: "hub1", Endpoint: probe},
			near.Node: {Kind: PathDirect},
			hub.Node:  {Kind: PathDirect},
		},
	}
	p := NewPlan(s)
	byKey := map[string]wg.Peer{}
	for _, pe := range p.Peers {
		byKey[pe.PublicKey.String()] = pe
	}
	h := byKey[hub.WireGuard.Key().String()]
	if want := []netip.Prefix{host(hub.Addr), host(far.Addr)}; !slices.Equal(h.AllowedIPs, want) {
		t.Errorf("hub AllowedIPs %v, want %v", h.AllowedIPs, want)
	}
	f := byKey[far.WireGuard.Key().String()]
	if len(f.AllowedIPs) != 0 || f.Endpoint != probe {
		t.Errorf("relayed member's own peer: %+v", f)
	}
	if n := byKey[near.WireGuard.Key().String()]; !slices.Equal(n.AllowedIPs, []netip.Prefix{host(near.Addr)}) || n.Endpoint != ap("198.51.100.8:51820") {
		t.Errorf("direct member: %+v", n)
	}
	if len(p.Peers) != 3 {
		t.Errorf("%d peers", len(p.Peers))
	}
	// The snapshot's members are not modified.
	if len(s.Members[0].Routes) != 0 {
		t.Error("snapshot modified")
	}

	// Relaying through a member that is not a hub, or through the member
	// itself, is refused: the member keeps its address.
	s.Paths[far.Node] = Path{Kind: PathRelay, Via: near.Node}
	if f := peerOf(NewPlan(s), far); !slices.Equal(f.AllowedIPs, []netip.Prefix{host(far.Addr)}) {
		t.Errorf("relay through a non-hub: %+v", f)
	}

	// --relay-only: only hubs are peers, relayed members on the hub.
	s.Paths[far.Node] = Path{Kind: PathRelay, Via: hub.Node}
	s.Paths[near.Node] = Path{Kind: PathRelay, Via: hub.Node}
	s.Mode = PathRelayOnly
	p = NewPlan(s)
	if len(p.Peers) != 1 || !slices.Equal(p.Peers[0].AllowedIPs, []netip.Prefix{host(hub.Addr), host(far.Addr), host(near.Addr)}) {
		t.Errorf("relay-only peers: %+v", p.Peers)
	}
	// A hub ignores --relay-only.
	s.Self.Roles = identity.RoleHub
	if p = NewPlan(s); len(p.Peers) != 3 {
		t.Errorf("relay-only hub: %d peers", len(p.Peers))
	}
}

func peerOf(p *Plan, m discovery.Member) wg.Peer {
	for _, pe := range p.Peers {
		if pe.PublicKey == m.WireGuard.Key() {
			return pe
		}
	}
	return wg.Peer{}
}
