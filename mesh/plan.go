package mesh

import (
	"bytes"
	"crypto/x509"
	"net/netip"
	"slices"
	"strings"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/mesh/wg"
	"github.com/meshnode/meshnode/natsnode"
)

// Snapshot is everything a Plan is computed from: this node, the member
// table as discovery reported it, the revocations and our own underlay
// endpoints. NewPlan reads nothing else, so a plan is a pure function of
// its snapshot and can be tested without a device, gossip or NATS.
type Snapshot struct {
	Self Self
	// Members is discovery's member table in any state and any order; it
	// may contain this node, which the plan drops.
	Members []discovery.Member
	// Revoked lists revoked identities; nil means none. See Plan.isRevoked
	// for why the plan keeps asking it after NewPlan.
	Revoked Revocations
	// Endpoints are this node's own WireGuard endpoints: their address
	// families decide which of a member's endpoints we dial.
	Endpoints []netip.AddrPort
	// RevokedNodes lists the revoked identities (Revoked answers for the
	// same set): their overlay addresses become Plan.CutOff.
	RevokedNodes []identity.NodePublic
	// Phones are the CA-signed phone tickets known (phone.go), and
	// ActivePhones the phones this node, as their hub, saw a fresh
	// handshake from.
	Phones       []*identity.PhoneTicket
	ActivePhones []netip.Addr
	// Paths are the path machine's choices (path.go), by member; nil
	// means every member direct. Mode is --relay-only or --no-relay.
	// See routeThroughHubs.
	Paths map[identity.NodePublic]Path
	Mode  PathMode
	// KeepRoutes lists members gossip calls dead or left whose NATS
	// routes stay: WireGuard has not yet confirmed the death, or it
	// refutes it (natsdead.go). nil: gossip alone decides.
	KeepRoutes map[identity.NodePublic]bool
}

// Self is what a plan needs to know about this node.
type Self struct {
	Name      string
	Node      identity.NodePublic
	Addr      netip.Addr // overlay address
	RoutePort int        // NATS route port, used as given
	// LeafPort is the NATS leaf-node port of every core member (0: the
	// default): see plancore.go.
	LeafPort int
	Roles    identity.Roles
	// WireGuard is this node's WireGuard key and Prefix the mesh /48: no
	// member may claim the key, hub routes must lie inside the prefix (see
	// filterPeers), and revoked members' addresses derive from it.
	WireGuard identity.WireGuardPublic
	Prefix    netip.Prefix
}

// Revocations answers whether an identity is revoked.
// *identity.RevocationSet is one.
type Revocations interface {
	IsRevoked(identity.NodePublic) bool
}

// Plan is what the node should look like for one snapshot: the WireGuard
// peers, the NATS route set, and who NATS admits. It is immutable once
// built and shared by concurrent readers (the reconcile loop, the status
// handler, every NATS connection): nothing may modify its slices.
type Plan struct {
	// Members is every other member, sorted by name: revoked members and
	// this node removed, every state kept (dead and left members stay
	// WireGuard peers until discovery forgets them, so that they can come
	// back; newcomers this node just admitted are in it before gossip
	// sees them).
	Members []discovery.Member
	// Peers is one WireGuard peer per entry of Members, in that order,
	// with relayed members' addresses on their hubs' peers; under
	// --relay-only only hubs have peers (routeThroughHubs).
	Peers []wg.Peer
	// Routes is the NATS route set of a core member: this node first,
	// then every routed core member in Members order (every routed
	// member in a mesh without core members). Empty on a leaf member.
	// Routed: alive, or called dead or left by gossip while
	// Snapshot.KeepRoutes keeps it (the data plane has not confirmed
	// the death, natsdead.go); the same holds for LeafRemotes.
	Routes []natsnode.Member
	// Core says whether this node is a core member (plancore.go):
	// routes, JetStream and a leaf-node listener; otherwise a leaf whose
	// nats-server connects to one of LeafRemotes.
	Core bool
	// LeafRemotes are, on a leaf member, the routed core members, in
	// Members order; empty on a core member.
	LeafRemotes []natsnode.Member
	// CutOff is the overlay address of every revoked member, sorted:
	// connections to and from them are to be reset at the TUN (a revoked
	// box gets no WireGuard peer, so nothing else would end them). Each
	// address derives from the revoked key, so it is known even after
	// gossip has forgotten the member.
	CutOff []netip.Addr
	// Dropped lists the members left out of Members (and so of Peers,
	// Routes and NATS admission), and the routes of members in Members
	// that are not in their AllowedIPs, sorted by member: a collision
	// with another member's WireGuard key or address, or a route the CA
	// did not allow (see filterPeers).
	Dropped []Drop

	self      identity.NodePublic
	selfRoles identity.Roles
	revoked   Revocations
	// clients is every identity NATS admits as a client besides self,
	// with the roles of its CA-signed ticket: every member in Members, in
	// any state.
	clients map[identity.NodePublic]identity.Roles
	// routeFrom maps the overlay address of each routed core member (and
	// of self) to the identity whose certificate must carry a route from
	// it; leafFrom the same for routed leaf members and leaf connections.
	routeFrom map[netip.Addr]identity.NodePublic
	leafFrom  map[netip.Addr]identity.NodePublic
	// coreMesh: the mesh has core members at all (plancore.go).
	coreMesh bool
	// phone is the phone part: peers on a hub, routes elsewhere, NATS
	// admission (phone.go).
	phone phonePlan
}

// NewPlan computes the plan for s. It does not modify s; the plan may
// share the members' slices with s.
func NewPlan(s Snapshot) *Plan {
	p := &Plan{
		self:      s.Self.Node,
		selfRoles: s.Self.Roles,
		revoked:   s.Revoked,
		clients:   make(map[identity.NodePublic]identity.Roles, len(s.Members)),
		routeFrom: make(map[netip.Addr]identity.NodePublic, len(s.Members)+1),
		leafFrom:  map[netip.Addr]identity.NodePublic{},
	}
	for _, m := range s.Members {
		if m.Node == s.Self.Node || m.Self || p.isRevoked(m.Node) {
			continue
		}
		p.Members = append(p.Members, m)
	}
	if s.Self.Prefix.IsValid() {
		for _, k := range s.RevokedNodes {
			if k != s.Self.Node {
				p.CutOff = append(p.CutOff, identity.OverlayAddr(s.Self.Prefix, k))
			}
		}
		slices.SortFunc(p.CutOff, netip.Addr.Compare)
	}
	// By name, as discovery lists them; the key breaks ties so that the
	// plan does not depend on the table's order even when names repeat.
	slices.SortFunc(p.Members, func(a, b discovery.Member) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return bytes.Compare(a.Node[:], b.Node[:])
	})
	p.Members, p.Dropped = filterPeers(s.Self, p.Members, phoneHubs(s))

	core := coreMesh(s.Self, p.Members, p.isRevoked)
	p.coreMesh = core
	p.Core = isCore(s.Self.Roles, core)
	if p.Core {
		p.Routes = []natsnode.Member{{ServerName: s.Self.Name, Addr: s.Self.Addr, RoutePort: s.Self.RoutePort}}
	}
	for _, m := range p.Members {
		p.Peers = append(p.Peers, peerFor(m, s.Endpoints))
		p.clients[m.Node] = m.Roles
		if !routable(m, s.KeepRoutes) {
			continue
		}
		nm := natsMember(m)
		// The first alive member holding an address decides (addresses
		// derive from identity keys, so in a sound table there is one).
		from := p.leafFrom
		switch {
		case isCore(m.Roles, core) && p.Core:
			p.Routes = append(p.Routes, nm)
			from = p.routeFrom
		case isCore(m.Roles, core):
			nm.LeafPort = s.Self.leafPort()
			p.LeafRemotes = append(p.LeafRemotes, nm)
			from = nil // a leaf accepts neither routes nor leaves
		case !p.Core:
			from = nil
		}
		if _, ok := from[m.Addr]; !ok && from != nil {
			from[m.Addr] = m.Node
		}
	}
	p.Peers = routeThroughHubs(p.Members, p.Peers, s.Paths, s.Mode, s.Self.Roles.Has(identity.RoleHub))
	// Self goes last, as it did when it was appended to the member list,
	// so a member claiming our address would win as before. Discovery's
	// admission makes that impossible (a ticket's address derives from its
	// key); the plan does not rely on it beyond keeping the old order.
	if _, ok := p.routeFrom[s.Self.Addr]; !ok && p.Core {
		p.routeFrom[s.Self.Addr] = s.Self.Node
	}
	p.planPhones(s)
	return p
}

// peerFor is member m as a WireGuard peer: its /128 and the routes it
// carries (phones behind a hub), dialled at the endpoint we can reach.
func peerFor(m discovery.Member, ours []netip.AddrPort) wg.Peer {
	p := wg.Peer{
		PublicKey:           m.WireGuard.Key(),
		AllowedIPs:          append([]netip.Prefix{netip.PrefixFrom(m.Addr, 128)}, m.Routes...),
		PersistentKeepalive: defaults.Keepalive,
	}
	if ep, ok := pickEndpoint(m.Endpoints, ours); ok {
		p.Endpoint = ep
	}
	return p
}

// pickEndpoint prefers a member endpoint of the same address family as one
// of ours (an IPv4-only box cannot dial IPv6); failing that, its first.
func pickEndpoint(theirs, ours []netip.AddrPort) (netip.AddrPort, bool) {
	has4, has6 := false, false
	for _, o := range ours {
		if o.Addr().Unmap().Is4() {
			has4 = true
		} else {
			has6 = true
		}
	}
	for _, t := range theirs {
		if (t.Addr().Unmap().Is4() && has4) || (!t.Addr().Unmap().Is4() && has6) {
			return t, true
		}
	}
	if len(theirs) > 0 {
		return theirs[0], true
	}
	return netip.AddrPort{}, false
}

// isRevoked asks the revocation set at call time, not at NewPlan time.
// Revocations are permanent, so a late answer can only refuse more: a
// revocation that arrives between two reconciles is honoured on the next
// connection already, before discovery's change event rebuilds the plan.
func (p *Plan) isRevoked(k identity.NodePublic) bool {
	return p.revoked != nil && p.revoked.IsRevoked(k)
}

// AuthorizeClient is asked on every NATS client connection: the client's
// identity must be this node or a member of the plan (in any state), and
// not revoked. A nil plan admits no one.
func (p *Plan) AuthorizeClient(k identity.NodePublic) bool {
	if p == nil || p.isRevoked(k) {
		return false
	}
	_, member := p.clients[k]
	_, phone := p.phone.byKey[k]
	return k == p.self || member || phone
}

// ClientRole is the NATS role of a client that proved identity k: what
// its CA-signed ticket says (discovery admitted the ticket; a member's
// roles cannot be claimed, only issued). Admin tickets get RoleAdmin,
// every other member (hubs included) RoleMember, and anyone
// AuthorizeClient refuses RoleNone. The node's own clients (the CLI
// connects with the node's key) get the node's role.
func (p *Plan) ClientRole(k identity.NodePublic) natsnode.Role {
	if !p.AuthorizeClient(k) {
		return natsnode.RoleNone
	}
	roles := p.selfRoles
	if k != p.self {
		if _, member := p.clients[k]; !member {
			return natsnode.RolePhone // the only other identities admitted
		}
		roles = p.clients[k]
	}
	if roles.Has(identity.RoleAdmin) {
		return natsnode.RoleAdmin
	}
	return natsnode.RoleMember
}

// AllowRoute accepts an inbound NATS route only from the overlay address
// of this node or an alive member, presenting a certificate (verified
// against the mesh CA by TLS before this is asked) for that same member's
// identity. WireGuard vouches for the source address and the certificate
// for the identity key; both must name the same member, so one member's
// certificate cannot carry a route from another member's address. A nil
// plan allows no route.
func (p *Plan) AllowRoute(remote netip.Addr, cert *x509.Certificate) bool {
	if p == nil {
		return false
	}
	node, ok := identity.CertNode(cert)
	if !ok {
		return false
	}
	want, ok := p.routeFrom[remote.Unmap()]
	if !ok || want != node {
		return false
	}
	// Self is never dropped for revocation here: it was not when the
	// member list was re-read on every route either.
	return want == p.self || !p.isRevoked(want)
}

// routable: the member's NATS routes belong in the plan. Gossip's dead
// and left need WireGuard's agreement (keep lists where it has none yet);
// unknown members (not seen by gossip since start) get no routes.
func routable(m discovery.Member, keep map[identity.NodePublic]bool) bool {
	switch {
	case m.State == discovery.StateAlive:
		return true
	case gossipDead(m.State):
		return keep[m.Node]
	}
	return false
}
