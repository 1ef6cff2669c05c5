package mesh

import (
	"net/netip"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/wg"
)

// routeThroughHubs applies the path machine's choices (Snapshot.Paths) to
// the peers built for members, index by index, and returns the peers to
// give WireGuard:
//
//   - a member relayed through hub H has all its AllowedIPs (its /128 and
//     any routes it carries) moved into H's peer: wireguard-go then sends
//     its traffic to H, and accepts traffic from it only from H, which is
//     what the member does for us in turn. Its own peer stays, without
//     AllowedIPs, so that the direct path can still be probed and found;
//   - a member being tried or probed is dialled at the path's endpoint;
//   - under --relay-only a member that is not a hub gets no peer of its
//     own: its direct handshakes then go unanswered and it relays too (the
//     two ends of a pair must agree, or each drops the other's packets).
//     A hub ignores --relay-only: it is what the others relay through.
//
// Moves happen after the plan's other rules, so the AllowedIPs moved are
// ones the member was allowed to hold, and they move whole: no prefix ends
// up on two peers. A hub that is not itself among the members (dropped,
// or unknown) is not relayed through: the member keeps its addresses.
func routeThroughHubs(members []discovery.Member, peers []wg.Peer, paths map[identity.NodePublic]Path, mode PathMode, selfHub bool) []wg.Peer {
	if len(paths) == 0 && (mode != PathRelayOnly || selfHub) {
		return peers
	}
	index := make(map[identity.NodePublic]int, len(members))
	for i, m := range members {
		index[m.Node] = i
	}
	out := make([]wg.Peer, len(peers))
	copy(out, peers)
	moved := make([]bool, len(peers))
	for i, m := range members {
		p, ok := paths[m.Node]
		if !ok {
			continue
		}
		if p.Endpoint.IsValid() {
			out[i].Endpoint = p.Endpoint
		}
		if p.Kind != PathRelay || m.Roles.Has(identity.RoleHub) {
			continue
		}
		h, ok := index[p.Via]
		if !ok || h == i || !members[h].Roles.Has(identity.RoleHub) {
			continue
		}
		// Copies: the peers may share slices with the snapshot.
		out[h].AllowedIPs = append(append([]netip.Prefix(nil), out[h].AllowedIPs...), out[i].AllowedIPs...)
		out[i].AllowedIPs = nil
		moved[i] = true
	}
	if mode != PathRelayOnly || selfHub {
		return out
	}
	kept := make([]wg.Peer, 0, len(out))
	for i, m := range members {
		if m.Roles.Has(identity.RoleHub) {
			kept = append(kept, out[i])
		}
	}
	return kept
}
