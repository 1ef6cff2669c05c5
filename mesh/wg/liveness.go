package wg

import (
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// This file decides which members to cut off (SetCutOff) for being dead.
// Gossip alone may be wrong (memberlist's UDP can fail while the tunnel
// works, or a partition can hide a member from this node's gossip), and so
// may WireGuard's handshake age alone: a live peer rehandshakes only every
// two minutes while traffic flows and never while idle without keepalive,
// so "no handshake for a while" is what a healthy peer looks like too. What
// WireGuard can say for certain is that it asked the peer for a handshake
// and got none: ProbeDead asks, CutOffSet requires both that and gossip.
//
// mesh.Node is meant to call it at the end of every reconcile, after Apply
// (revoked members are not in the plan, so they come from the revocation
// set; their address derives from their key):
//
//	var dead []wgtypes.Key                    // members in state dead or left
//	probes, _ := dev.ProbeDead(dead)
//	stats, _ := dev.Peers()                   // LastHandshake per key
//	hs := []wg.MemberHealth{...}              // one per member: Addr, GossipDead, LastHandshake, ProbeSent
//	for _, r := range revs.List() {
//		hs = append(hs, wg.MemberHealth{Addr: identity.OverlayAddr(prefix, r.Node), Revoked: true})
//	}
//	dev.SetCutOff(wg.CutOffSet(hs, time.Now()))
//
// A revocation is then cut off on the reconcile its gossip triggers; a dead
// member on the first reconcile at least ProbeGrace after gossip declared
// it dead (15-20 s with the 5 s tick).

// ProbeGrace is how long a handshake that ProbeDead asked for may take
// before the peer counts as not answering. wireguard-go retries an
// unanswered initiation every 5 s (REKEY_TIMEOUT), so a live peer gets
// three chances, and a member's traffic is lost for at most this long
// after gossip gives up on it before its connections are reset.
const ProbeGrace = 15 * time.Second

// MemberHealth is what the caller knows about one member when computing
// the cut-off set.
type MemberHealth struct {
	Addr netip.Addr // the member's overlay address
	// Revoked: a CA-signed revocation of the member is known. Nothing
	// else is asked: a revoked member is cut off even if it answers.
	Revoked bool
	// GossipDead: gossip declares the member dead or left; not suspect,
	// not "unknown" (seen in no gossip yet since start).
	GossipDead bool
	// LastHandshake is the member's WireGuard peer's last handshake
	// (PeerStats.LastHandshake); zero means never or no peer.
	LastHandshake time.Time
	// ProbeSent is when ProbeDead asked WireGuard for the handshake that
	// is to prove the member alive (its result for the member's key);
	// zero means none asked.
	ProbeSent time.Time
}

// CutOffSet returns the sorted addresses to pass to Device.SetCutOff. The
// rule, which needs two independent signals for a dead member because a
// wrong "dead" resets a live member's connections:
//
//   - revoked: cut off;
//   - else gossip dead AND WireGuard asked for a handshake at least
//     ProbeGrace ago (ProbeSent) AND had none since: cut off;
//   - everything else, including a handshake within ProbeGrace of now,
//     and a ProbeSent or handshake in the future (the clock stepped): not.
//
// It is a pure function of its arguments; the caller evaluates it on every
// reconcile, so a member that handshakes or is seen alive again leaves the
// set at once.
func CutOffSet(members []MemberHealth, now time.Time) []netip.Addr {
	var out []netip.Addr
	for _, m := range members {
		if m.cutOff(now) {
			out = append(out, m.Addr.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

func (m MemberHealth) cutOff(now time.Time) bool {
	switch {
	case !m.Addr.IsValid():
		return false
	case m.Revoked:
		return true
	case !m.GossipDead || m.ProbeSent.IsZero():
		return false
	case !m.LastHandshake.IsZero() && (!m.LastHandshake.Before(m.ProbeSent) || now.Sub(m.LastHandshake) < ProbeGrace):
		// It answered the probe, or very recently something else.
		return false
	}
	return now.Sub(m.ProbeSent) >= ProbeGrace
}

// prober remembers the outstanding liveness probe of each gossip-dead peer.
type prober struct {
	mu      sync.Mutex
	started map[wgtypes.Key]time.Time // per peer key: when its current probe was asked for
}

// ProbeDead is called on every reconcile with the WireGuard keys of the
// members gossip declares dead (and not with the others: a key left out is
// forgotten, so the next time its member dies it is probed afresh). It asks
// WireGuard to handshake with each such peer that has no probe outstanding
// and returns, per key, when its current probe was asked for: the value for
// MemberHealth.ProbeSent. A probe stays current until the peer completes a
// handshake after it; wireguard-go keeps retrying it on its own.
//
// A peer that handshook within ProbeGrace is not probed (WireGuard has just
// heard from it), nor is one that is not on the device or has no endpoint to
// send to (a member behind NAT that calls in): WireGuard cannot vouch for
// its death, so it is never cut off for it. A gossip-dead peer that does
// answer is asked again once its handshake is ProbeGrace old: one extra
// handshake every ProbeGrace for as long as gossip and WireGuard disagree.
func (d *Device) ProbeDead(keys []wgtypes.Key) (map[wgtypes.Key]time.Time, error) {
	peers, err := d.Peers()
	if err != nil {
		return nil, err
	}
	live := make(map[wgtypes.Key]PeerStats, len(peers))
	for _, p := range peers {
		live[p.PublicKey] = p
	}
	now := time.Now()
	d.probes.mu.Lock()
	defer d.probes.mu.Unlock()
	next := make(map[wgtypes.Key]time.Time, len(keys))
	for _, k := range keys {
		p, ok := live[k]
		if !ok || !p.Endpoint.IsValid() {
			continue
		}
		if hs := p.LastHandshake; !hs.IsZero() && now.Sub(hs) < ProbeGrace {
			continue
		}
		start, ok := d.probes.started[k]
		if !ok || p.LastHandshake.After(start) {
			peer := d.dev.LookupPeer(device.NoisePublicKey(k))
			if peer == nil {
				continue
			}
			// Returns nil without sending when an initiation went out
			// less than 5 s ago: that one's retries then count.
			if err := peer.SendHandshakeInitiation(false); err != nil {
				d.log.Debug("liveness probe not sent", "peer", k, "err", err)
				continue
			}
			start = now
			d.log.Info("gossip says peer is dead; asking WireGuard for a handshake", "peer", k)
		}
		next[k] = start
	}
	d.probes.started = next
	return maps.Clone(next), nil
}
