package mesh

import (
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/mesh/wg"
)

// applyCutOff tells the WireGuard device which overlay addresses to answer
// with TCP resets: every revoked member, and every member gossip declares
// dead or left whose WireGuard peer did not answer a handshake asked for at
// least wg.ProbeGrace ago (wg.CutOffSet: two signals, so a false "dead" from
// gossip alone never resets a live member's connections). Local clients of
// a member that died, NATS routes this node dialed to it among them, fail
// at once instead of waiting for their own keepalives (minutes).
//
// Called at the end of every reconcile, under reconcileMu, with the peer
// list the reconcile read before Apply (their handshakes).
func (n *Node) applyCutOff(p *Plan, peers []wg.PeerStats, now time.Time) {
	// A member reached through a hub has a direct peer that never
	// answers: a probe there proves nothing, so a relayed member is cut
	// off for revocation only, never for a death gossip alone claims.
	paths := n.nat.current()
	deadHere := func(m discovery.Member) bool {
		return gossipDead(m.State) && paths[m.Node].Kind != PathRelay
	}
	var dead []wgtypes.Key
	for _, m := range p.Members {
		if deadHere(m) {
			dead = append(dead, m.WireGuard.Key())
		}
	}
	probes, err := n.dev.ProbeDead(dead)
	if err != nil {
		n.log.Warn("probe dead members over WireGuard", "err", err)
	}
	if peers == nil { // reconcile could not read them: try once more
		peers, _ = n.dev.Peers()
	}
	handshakes := map[wgtypes.Key]time.Time{}
	for _, ps := range peers {
		handshakes[ps.PublicKey] = ps.LastHandshake
	}
	health := make([]wg.MemberHealth, 0, len(p.Members))
	for _, m := range p.Members {
		k := m.WireGuard.Key()
		health = append(health, wg.MemberHealth{
			Addr: m.Addr, GossipDead: deadHere(m),
			LastHandshake: handshakes[k], ProbeSent: probes[k],
		})
	}
	// Revoked members are not in the plan's members; the plan lists
	// their addresses (derived from their keys).
	for _, a := range p.CutOff {
		health = append(health, wg.MemberHealth{Addr: a, Revoked: true})
	}
	n.dev.SetCutOff(wg.CutOffSet(health, now))
}

func gossipDead(s discovery.State) bool { return s == discovery.StateDead || s == discovery.StateLeft }
