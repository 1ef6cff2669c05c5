package mesh

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/mesh/wg"
)

// This file decides when a member that gossip calls dead is dead for NATS
// too, so that its routes (and the JetStream replicas behind them) go.
// Gossip alone is not enough: memberlist's packets can be lost while the
// tunnel works, and any member holding the gossip key can spread suspicion
// about another. Tearing down a live member's routes costs a JetStream
// re-election and stalls every stream it leads, so the plan keeps routing
// a gossip-dead member until the data plane agrees.
//
// The ask. When gossip declares a member dead, this node asks its
// WireGuard peer for a handshake and sends one UDP datagram to a closed
// port of the member's overlay address (defaults.NATSDeathNudgePort). A
// live member answers within a round trip: its WireGuard device lives in
// its meshnode process, and its kernel answers the datagram with an
// ICMPv6 port-unreachable through the tunnel. The answer is seen as the
// peer's RxBytes growing, which counts only authenticated packets (a
// fresh initiation, a response to ours, transport data that passed the
// replay filter): nobody but the live peer can make it grow. A completed
// handshake after the ask counts too. Both are needed: wireguard-go sends
// no initiation within 5 s of its previous one (and nobody outside it
// knows when that was, e.g. the one that lost a race with the peer's when
// both started), so the handshake alone can go unanswered for a live
// member; the datagram alone is lost where a firewall drops it.
//
// The verdict (judgeDeath): no answer within defaults.NATSDeathProbeGrace
// and the death is confirmed: the routes go. A kill -9 therefore costs the
// grace on top of gossip's detection, and a false suspicion one round
// trip. A confirmed death is judged again on every reconcile: a member
// that sends anything later (at the latest its persistent keepalive) gets
// its routes back. A member WireGuard cannot ask (relayed through a hub,
// or behind NAT with no endpoint to send to) is judged by gossip alone, as
// before.

// deathVerdict is what the data plane says about a member gossip calls dead.
type deathVerdict uint8

const (
	// deathConfirmed: no answer, or the member cannot be asked. The
	// plan drops the member's NATS routes.
	deathConfirmed deathVerdict = iota
	// deathPending: asked, the grace has not passed. Routes stay.
	deathPending
	// deathRefuted: the member answered after gossip's verdict. Routes
	// stay.
	deathRefuted
)

func (v deathVerdict) String() string {
	switch v {
	case deathPending:
		return "pending"
	case deathRefuted:
		return "refuted"
	}
	return "confirmed"
}

// deathEvidence is what this node knows of one gossip-dead member's data
// plane.
type deathEvidence struct {
	// CanAsk: the member is a direct WireGuard peer with an endpoint to
	// send to.
	CanAsk bool
	// Asked is when the member was last asked; zero: never.
	Asked time.Time
	// RxAtAsk is the peer's RxBytes when it was asked, and Rx now.
	RxAtAsk, Rx int64
	// LastHandshake is the peer's (PeerStats.LastHandshake); zero: never.
	LastHandshake time.Time
}

// answered: the peer spoke after the ask (see the file comment).
func (e deathEvidence) answered(now time.Time) bool {
	if e.Rx > e.RxAtAsk {
		return true
	}
	hs := e.LastHandshake
	return !hs.IsZero() && hs.After(e.Asked) && !hs.After(now)
}

// judgeDeath is the rule (a pure function; TestJudgeDeath is its table):
//
//   - cannot ask: confirmed;
//   - never asked, or Asked in the future (the clock stepped): ask now,
//     pending;
//   - answered since the ask: refuted; defaults.NATSDeathReask after the
//     ask (gossip still says dead), ask again;
//   - otherwise pending until Asked + defaults.NATSDeathProbeGrace, then
//     confirmed.
//
// ask reports that the caller should ask now (and record now and the
// current RxBytes); wake is when the verdict may next change by itself
// (zero: only the member or gossip can change it).
func judgeDeath(e deathEvidence, now time.Time) (v deathVerdict, ask bool, wake time.Time) {
	grace, reask := defaults.NATSDeathProbeGrace, defaults.NATSDeathReask
	switch {
	case !e.CanAsk:
		return deathConfirmed, false, time.Time{}
	case e.Asked.IsZero() || e.Asked.After(now):
		return deathPending, true, now.Add(grace)
	case e.answered(now):
		if now.Sub(e.Asked) >= reask {
			return deathRefuted, true, now.Add(grace)
		}
		return deathRefuted, false, e.Asked.Add(reask)
	case now.Sub(e.Asked) < grace:
		return deathPending, false, e.Asked.Add(grace)
	}
	return deathConfirmed, false, time.Time{}
}

// asker asks a member's data plane whether it lives (nodeAsker in the
// node, a fake in tests).
type asker interface {
	Ask(wgtypes.Key, netip.Addr) error
}

// deathWitness applies judgeDeath on every reconcile (under reconcileMu;
// its own mutex makes refuted safe from the metrics handler).
type deathWitness struct {
	mu sync.Mutex
	// asked is, per member gossip calls dead, when it was asked and the
	// peer's RxBytes then; members that come back alive are forgotten,
	// so their next death is judged afresh.
	asked map[identity.NodePublic]askedAt
	// verdicts is the last verdict per gossip-dead member (for logs and
	// metrics).
	verdicts map[identity.NodePublic]deathVerdict
}

type askedAt struct {
	when time.Time
	rx   int64
}

// judge returns the members gossip calls dead whose NATS routes stay
// (pending or refuted), and when to reconcile again for a verdict to come
// due (zero: none pending). peers is the device's peer list; paths the
// path machine's current choices.
func (w *deathWitness) judge(members []discovery.Member, peers []wg.PeerStats, paths map[identity.NodePublic]Path, dev asker, log *slog.Logger, now time.Time) (map[identity.NodePublic]bool, time.Time) {
	stats := make(map[wgtypes.Key]wg.PeerStats, len(peers))
	for _, p := range peers {
		stats[p.PublicKey] = p
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	asked := make(map[identity.NodePublic]askedAt)
	verdicts := make(map[identity.NodePublic]deathVerdict)
	var keep map[identity.NodePublic]bool
	var wake time.Time
	for _, m := range members {
		if m.Self || !gossipDead(m.State) {
			continue
		}
		k := m.WireGuard.Key()
		ps, onDevice := stats[k]
		prev := w.asked[m.Node]
		e := deathEvidence{
			CanAsk: onDevice && ps.Endpoint.IsValid() && paths[m.Node].Kind != PathRelay,
			Asked:  prev.when, RxAtAsk: prev.rx, Rx: ps.RxBytes,
			LastHandshake: ps.LastHandshake,
		}
		v, ask, next := judgeDeath(e, now)
		if ask {
			if err := dev.Ask(k, m.Addr); err != nil {
				log.Debug("cannot ask whether a dead member lives", "member", m.Name, "err", err)
				v, next = deathConfirmed, time.Time{}
			} else {
				e.Asked, e.RxAtAsk = now, e.Rx
			}
		}
		if !e.Asked.IsZero() {
			asked[m.Node] = askedAt{e.Asked, e.RxAtAsk}
		}
		verdicts[m.Node] = v
		if v != deathConfirmed {
			if keep == nil {
				keep = make(map[identity.NodePublic]bool)
			}
			keep[m.Node] = true
		}
		if !next.IsZero() && (wake.IsZero() || next.Before(wake)) {
			wake = next
		}
		if old, seen := w.verdicts[m.Node]; !seen || old != v {
			switch v {
			case deathRefuted:
				log.Warn("gossip says member is dead but it answers over WireGuard: keeping its NATS routes", "member", m.Name)
			case deathConfirmed:
				log.Info("member dead for NATS: gossip and WireGuard agree", "member", m.Name, "asked", e.CanAsk)
			}
		}
	}
	w.asked, w.verdicts = asked, verdicts
	return keep, wake
}

// refuted counts the members gossip calls dead that still answer.
func (w *deathWitness) refuted() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, v := range w.verdicts {
		if v == deathRefuted {
			n++
		}
	}
	return n
}

// nodeAsker asks through the node's WireGuard device and the kernel.
type nodeAsker struct{ dev *wg.Device }

// Ask asks WireGuard for a handshake and nudges the member's kernel (see
// the file comment). The nudge's error is not the caller's business: a
// datagram that cannot be sent leaves the handshake to answer.
func (a nodeAsker) Ask(k wgtypes.Key, addr netip.Addr) error {
	if err := a.dev.Handshake(k); err != nil {
		return err
	}
	nudge(addr)
	return nil
}

// nudge sends one byte to a closed UDP port of the member's overlay
// address: its kernel's port-unreachable comes back through the tunnel.
func nudge(addr netip.Addr) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, defaults.NATSDeathNudgePort)))
	if err != nil {
		return
	}
	_, _ = c.Write([]byte{0})
	_ = c.Close()
}

// wakeForDeath arranges a reconcile at wake (zero: none), when a pending
// verdict comes due. Under reconcileMu.
func (n *Node) wakeForDeath(wake, now time.Time) {
	if n.deathTimer != nil {
		n.deathTimer.Stop()
		n.deathTimer = nil
	}
	if wake.IsZero() {
		return
	}
	// A little after the deadline, so that the verdict is due when the
	// reconcile looks.
	n.deathTimer = time.AfterFunc(wake.Sub(now)+10*time.Millisecond, func() {
		select {
		case n.deathWake <- struct{}{}:
		default:
		}
	})
}
