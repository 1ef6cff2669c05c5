package mesh

import (
	"io"
	"runtime"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/meshnode/meshnode/mesh/metrics"
	"github.com/meshnode/meshnode/mesh/wg"
)

// WriteMetrics writes the node's metrics in the Prometheus text format:
// what mesh/metrics names, read now from the plan, the WireGuard device,
// gossip, nats-server and the enrollment endpoint. The Go runtime and
// process families are included.
func (n *Node) WriteMetrics(w io.Writer) {
	metrics.Write(w, n.metricsSnapshot(time.Now()), true)
}

func (n *Node) metricsSnapshot(now time.Time) *metrics.Snapshot {
	m := n.current() // the ticket and certificate as last renewed
	s := &metrics.Snapshot{
		Version: Version, GoVersion: runtime.Version(),
		Members: map[string]int{}, Peers: map[string]int{},
		TicketNotAfter: m.Ticket.NotAfter, CertNotAfter: m.Cert.Cert.NotAfter,
	}
	if m.Trust.Cert != nil {
		s.CANotAfter = m.Trust.Cert.NotAfter
	}
	// The mesh as this node sees it: itself (alive, or it would not
	// answer), every member of the plan by state, and the revoked.
	s.Members["alive"] = 1
	s.Members["revoked"] = n.revs.Len()
	n.renew.mu.Lock()
	s.LastRenewal = n.renew.last
	n.renew.mu.Unlock()

	var peers map[wgtypes.Key]wg.PeerStats
	if n.dev != nil {
		if list, err := n.dev.Peers(); err == nil {
			peers = make(map[wgtypes.Key]wg.PeerStats, len(list))
			for _, p := range list {
				peers[p.PublicKey] = p
				s.WireGuard.RxBytes += uint64(max(p.RxBytes, 0))
				s.WireGuard.TxBytes += uint64(max(p.TxBytes, 0))
			}
		}
	}
	if n.dev != nil {
		cs := n.dev.CutOffStats()
		s.WireGuard.CutOff, s.WireGuard.CutOffResets = cs.Addrs, cs.Resets
	}
	plan := n.plan.Load()
	for _, d := range plan.Dropped {
		if d.Route.IsValid() {
			s.WireGuard.DroppedRoutes++
		} else {
			s.WireGuard.DroppedMembers++
		}
	}
	for _, mem := range plan.Members {
		s.Members[apiState(mem.State).String()]++
		p, ok := peers[mem.WireGuard.Key()]
		path := peerPath(p, ok, now)
		if pt, known := n.nat.current()[mem.Node]; known {
			path = map[PathKind]string{PathDirect: "direct", PathRelay: "relayed", PathNone: "none"}[pt.Kind]
		}
		s.Peers[path]++
		switch {
		case !ok || p.LastHandshake.IsZero():
			s.WireGuard.NoHandshake++
		case now.Sub(p.LastHandshake) > s.WireGuard.OldestHandshake:
			s.WireGuard.OldestHandshake = now.Sub(p.LastHandshake)
		}
		if n.cfg.MetricsPerPeer {
			s.WireGuard.PerPeer = append(s.WireGuard.PerPeer, metrics.Peer{
				Name: mem.Name, Path: path, LastHandshake: p.LastHandshake,
				RxBytes: uint64(max(p.RxBytes, 0)), TxBytes: uint64(max(p.TxBytes, 0)),
			})
		}
	}

	if n.disc != nil {
		gs := n.disc.Stats()
		s.Gossip = metrics.Gossip{
			Refusals: widen(gs.Rejections), Revocations: gs.Revocations,
			PushPulls: gs.PushPulls, Probes: gs.Probes,
		}
		if !gs.LastChange.IsZero() {
			s.Gossip.SinceMembersChange = now.Sub(gs.LastChange)
		}
		s.Gossip.DeathsRefuted = n.witness.refuted()
	}
	if n.nats != nil {
		st, ns := n.nats.Stats(), n.nats.Status()
		s.NATS = metrics.NATS{
			Running: st.Running, RoutesUp: ns.RoutesUp, RoutesExpected: ns.RoutesExpected,
			Connections: st.Connections, InMsgs: st.InMsgs, OutMsgs: st.OutMsgs,
			InBytes: st.InBytes, OutBytes: st.OutBytes, SlowConsumers: st.SlowConsumers,
			JetStream: metrics.JetStream{
				Enabled: st.JetStream, MetaLeader: st.MetaLeader, Streams: st.Streams, Consumers: st.Consumers,
				MemoryBytes: st.MemoryBytes, StoreBytes: st.StoreBytes, MemoryLimit: st.MemoryLimit, StoreLimit: st.StoreLimit,
			},
		}
	}
	if f := n.enrollStats; f != nil {
		s.Enroll = f()
	}
	return s
}

// peerPath is the metrics path class of a member's WireGuard peer: direct
// while it has a fresh handshake over an endpoint, none otherwise; once
// the path machine has run, its verdict (path.go) replaces this.
func peerPath(p wg.PeerStats, ok bool, now time.Time) string {
	if ok && p.Endpoint.IsValid() && !p.LastHandshake.IsZero() && now.Sub(p.LastHandshake) <= handshakeFresh {
		return "direct"
	}
	return "none"
}

func widen(in map[string]int) map[string]uint64 {
	out := make(map[string]uint64, len(in))
	for k, v := range in {
		out[k] = uint64(max(v, 0))
	}
	return out
}
