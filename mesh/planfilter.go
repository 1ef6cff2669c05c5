package mesh

import (
	"bytes"
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
)

// Drop is a member, or one route of a member, that a plan left out because
// WireGuard could not be given it without breaking someone else. wg.Apply
// refuses a peer set in which one key or one allowed IP appears twice, and
// the device itself would route a shared prefix to only one of the peers,
// so one bad entry used to freeze every peer change on every node. The plan
// drops the entry instead, the same one on every node, and applies the rest.
type Drop struct {
	// Member and Node name the member whose entry was dropped.
	Member string
	Node   identity.NodePublic
	// Route is valid when only that route was ignored: the member itself
	// is still a peer. Otherwise the whole member was left out.
	Route netip.Prefix
	// Reason says why, naming the member it collided with.
	Reason string
}

// String is the line status shows under Problems.
func (d Drop) String() string {
	if d.Route.IsValid() {
		return fmt.Sprintf("member %s: route %s ignored: %s", d.Member, d.Route, d.Reason)
	}
	return fmt.Sprintf("member %s dropped from WireGuard: %s", d.Member, d.Reason)
}

// precedence orders members for collisions: the older ticket first (the
// member that held the key or address before the other one was issued),
// then the lower name, then the lower identity key, so that the order
// needs nothing but the member records and every node agrees on it.
//
// A renewed ticket is younger than the one it replaces, so after a renewal
// an impostor issued earlier would win; the admission check (a join must
// prove its WireGuard key, and keys already in use are refused) is what
// keeps impostors out, this order only keeps the damage deterministic.
func precedence(a, b discovery.Member) int {
	return cmp.Or(
		a.TicketIssued.Compare(b.TicketIssued),
		strings.Compare(a.Name, b.Name),
		bytes.Compare(a.Node[:], b.Node[:]),
	)
}

// filterPeers returns the members that can become WireGuard peers side by
// side, in the order given, each with only the routes it may carry, and
// what was dropped. members holds neither self nor revoked members.
//
// A member is dropped when its WireGuard key or overlay address is this
// node's, or another member's with precedence. Its routes (the prefixes it
// asks to have routed through it, on top of its /128) are honoured only
// where the CA allowed them: each route is the /128 of a phone whose
// CA-signed ticket names the member as one of its hubs (phoneHubs), inside
// the mesh prefix and no member's overlay address (this node's included).
// So a member can never claim a default route, a prefix of the underlay,
// a shorter prefix of the mesh, another member's address, or a phone that
// is not its own. Which of a phone's hubs carries it is planPhones' choice.
func filterPeers(self Self, members []discovery.Member, phoneHubs map[netip.Prefix][]identity.NodePublic) ([]discovery.Member, []Drop) {
	var drops []Drop
	keyOwner := map[identity.WireGuardPublic]string{}
	addrOwner := map[netip.Addr]string{}
	const thisNode = "this node"
	if !self.WireGuard.IsZero() {
		keyOwner[self.WireGuard] = thisNode
	}
	if self.Addr.IsValid() {
		addrOwner[self.Addr] = thisNode
	}
	// Every overlay address in the table is off limits for routes, also
	// that of a member dropped below: its /128 must not move to a hub.
	memberAddr := map[netip.Addr]string{}
	for _, m := range members {
		if _, ok := memberAddr[m.Addr]; !ok {
			memberAddr[m.Addr] = "member " + m.Name
		}
	}
	if self.Addr.IsValid() {
		memberAddr[self.Addr] = thisNode
	}

	byPrecedence := slices.Clone(members)
	slices.SortFunc(byPrecedence, precedence)
	// Keyed by name and identity: one identity under two names (a cloned
	// state directory) must lose only the entry without precedence.
	type entry struct {
		name string
		node identity.NodePublic
	}
	dropped := map[entry]bool{}
	for _, m := range byPrecedence {
		reason := ""
		switch {
		case m.WireGuard.IsZero():
			reason = "it has no WireGuard key"
		case !m.Addr.IsValid():
			reason = "it has no overlay address"
		case keyOwner[m.WireGuard] != "":
			reason = "its WireGuard key is also used by " + ownerName(keyOwner[m.WireGuard])
		case addrOwner[m.Addr] != "":
			reason = fmt.Sprintf("its overlay address %s is also used by %s", m.Addr, ownerName(addrOwner[m.Addr]))
		}
		if reason != "" {
			drops = append(drops, Drop{Member: m.Name, Node: m.Node, Reason: reason})
			dropped[entry{m.Name, m.Node}] = true
			continue
		}
		keyOwner[m.WireGuard] = m.Name
		addrOwner[m.Addr] = m.Name
	}

	routes := map[entry][]netip.Prefix{}
	routeOwner := map[netip.Prefix]string{} // to skip a route a member lists twice
	for _, m := range byPrecedence {
		if dropped[entry{m.Name, m.Node}] {
			continue
		}
		for _, r := range m.Routes {
			reason := ""
			switch {
			case !r.IsValid() || r.Bits() != 128 || !r.Addr().Is6() || !self.Prefix.IsValid() || !self.Prefix.Contains(r.Addr()):
				reason = fmt.Sprintf("only /128s inside the mesh prefix %s are routed through a hub", self.Prefix)
			case memberAddr[r.Addr()] != "":
				reason = "it is the overlay address of " + memberAddr[r.Addr()]
			case !slices.Contains(phoneHubs[r], m.Node):
				reason = "no phone ticket names " + m.Name + " as its hub"
			case routeOwner[r] == m.Name:
				continue // listed twice by the same hub
			}
			if reason != "" {
				drops = append(drops, Drop{Member: m.Name, Node: m.Node, Route: r, Reason: reason})
				continue
			}
			routeOwner[r] = m.Name
			routes[entry{m.Name, m.Node}] = append(routes[entry{m.Name, m.Node}], r)
		}
	}

	var kept []discovery.Member
	for _, m := range members {
		if dropped[entry{m.Name, m.Node}] {
			continue
		}
		// A new slice: the plan must not modify the snapshot's members.
		m.Routes = routes[entry{m.Name, m.Node}]
		kept = append(kept, m)
	}
	slices.SortFunc(drops, func(a, b Drop) int {
		return cmp.Or(strings.Compare(a.Member, b.Member), bytes.Compare(a.Node[:], b.Node[:]), comparePrefix(a.Route, b.Route))
	})
	return kept, drops
}

func ownerName(owner string) string {
	if owner == "this node" {
		return owner
	}
	return "member " + owner
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// phoneHubs is, for every phone /128 of an unrevoked phone ticket, the
// hubs the ticket names: the only routes the CA allows a member to carry.
func phoneHubs(s Snapshot) map[netip.Prefix][]identity.NodePublic {
	out := make(map[netip.Prefix][]identity.NodePublic, len(s.Phones))
	for _, t := range s.Phones {
		if t == nil || (s.Revoked != nil && s.Revoked.IsRevoked(t.Node)) {
			continue
		}
		out[netip.PrefixFrom(t.Addr, 128)] = t.Hubs
	}
	return out
}
