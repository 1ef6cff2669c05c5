package mesh

import (
	"crypto/x509"
	"net/netip"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/natsnode"
)

// Core and leaf members (the NATS part of the plan).
//
// The core set is recorded in the tickets: the admitting CA gives
// identity.RoleCore to the first members, up to the mesh's max_core
// (discovery/enroll, Server.coreRole), so every member reads the same set
// from the member table. Core members form the NATS route cluster and the
// JetStream meta group; every other member is a leaf: its nats-server
// connects to one alive core member as a NATS leaf node.
//
// A mesh made before core members has no core ticket at all, and its CA
// never grants one: with no core-flagged ticket in sight (self and the
// member table, revoked members left out) every member is core, the full
// route mesh it always was.

// coreMesh reports whether the mesh has core members at all: this node's
// ticket or a member's (in any state, not revoked) carries RoleCore.
func coreMesh(self Self, members []discovery.Member, revoked func(identity.NodePublic) bool) bool {
	if self.Roles.Has(identity.RoleCore) {
		return true
	}
	for _, m := range members {
		if m.Roles.Has(identity.RoleCore) && !revoked(m.Node) {
			return true
		}
	}
	return false
}

// isCore is whether roles make a core member in a mesh that has (core) or
// has not core members.
func isCore(roles identity.Roles, core bool) bool {
	return !core || roles.Has(identity.RoleCore)
}

// leafPort is the leaf-node port of every core member: gossip does not
// carry it, so the mesh uses one (this node's setting).
func (s Self) leafPort() int {
	if s.LeafPort > 0 {
		return s.LeafPort
	}
	return defaults.NATSLeafPort
}

// natsMember is m as a NATS route target (LeafPort is set for leaf
// remotes only).
func natsMember(m discovery.Member) natsnode.Member {
	port := int(m.NATSRoutePort)
	if port == 0 {
		port = defaults.NATSRoutePort
	}
	return natsnode.Member{ServerName: m.Name, Addr: m.Addr, RoutePort: port}
}

// AllowLeaf accepts an inbound NATS leaf connection (on a core server)
// only from the overlay address of an alive leaf member presenting a
// certificate for that same member's identity (as AllowRoute does for
// routes). Core members route; they do not connect as leaves. A nil plan
// allows none.
func (p *Plan) AllowLeaf(remote netip.Addr, cert *x509.Certificate) bool {
	if p == nil || !p.Core {
		return false
	}
	node, ok := identity.CertNode(cert)
	if !ok {
		return false
	}
	want, ok := p.leafFrom[remote.Unmap()]
	return ok && want == node && !p.isRevoked(want)
}
