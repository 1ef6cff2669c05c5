package mesh

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/natsnode"
)

// handshakeFresh is how old a WireGuard handshake may be before a live
// member counts as unreachable (WireGuard rekeys every 2 minutes while
// traffic flows, and keepalives keep it flowing).
const handshakeFresh = 3 * time.Minute

// Status reports the node, its members and NATS routes, and whether all is
// well; Problems names what is not.
func (n *Node) Status() api.Status {
	m := n.current()
	now := time.Now()
	st := api.Status{
		Name: m.Ticket.Name, Mesh: m.Trust.Mesh, Addr: m.Ticket.Addr,
		WireGuardKey: m.ID.WireGuardPublic(), Roles: m.Ticket.Roles,
		Interface: n.cfg.Interface, ListenPort: n.cfg.ListenPort,
		CertExpires: m.Cert.Cert.NotAfter, TicketExpires: m.Ticket.NotAfter,
		// nil when empty: the JSON has always said null, not [].
		Endpoints: append([]netip.AddrPort(nil), n.eps...),
	}
	n.nat.mu.Lock()
	for _, o := range n.nat.observed {
		st.Observed = append(st.Observed, o.ep)
	}
	n.nat.mu.Unlock()
	slices.SortFunc(st.Observed, netip.AddrPort.Compare)
	st.CAExpires = m.Trust.Cert.NotAfter
	if left := st.CAExpires.Sub(now); left < defaults.CAWarnBefore {
		st.Problems = append(st.Problems, fmt.Sprintf("mesh CA certificate expires in %s (at %s): it is not renewed automatically",
			left.Round(time.Hour), st.CAExpires.UTC().Format(time.RFC3339)))
	}
	n.renew.mu.Lock()
	st.Renewal = api.RenewalStatus{
		Last: n.renew.last, Count: n.renew.count, Issued: m.Ticket.NotBefore, Next: n.renew.next,
		MemberValidity: n.cfg.MemberValidity,
	}
	renewErr := n.renew.lastErr
	n.renew.mu.Unlock()
	st.GossipKey = n.gossipKeyStatus()
	if st.GossipKey.Pending != 0 {
		st.Problems = append(st.Problems, fmt.Sprintf("gossip key epoch %d announced but not fetched yet", st.GossipKey.Pending))
	}
	if renewErr != nil {
		st.Renewal.Error = renewErr.Error()
	}
	if st.Degraded = n.degraded(now); st.Degraded != "" {
		st.Problems = append(st.Problems, "degraded: "+st.Degraded)
	} else if renewErr != nil && now.After(renewAt(m)) {
		// Renewal is overdue only once two thirds have passed; a failure
		// before expiry is a warning worth showing.
		st.Problems = append(st.Problems, "renewal failing (expires "+m.Expires().UTC().Format(time.RFC3339)+"): "+st.Renewal.Error)
	}
	stats := map[wgtypes.Key]wgStat{}
	if n.dev != nil {
		if peers, err := n.dev.Peers(); err == nil {
			for _, p := range peers {
				stats[p.PublicKey] = wgStat{ep: p.Endpoint.String(), hs: p.LastHandshake, rx: p.RxBytes, tx: p.TxBytes, hasEP: p.Endpoint.IsValid()}
			}
		} else {
			st.Problems = append(st.Problems, "read WireGuard peers: "+err.Error())
		}
	}
	// The members of the plan last applied: the peers whose statistics
	// are shown are the ones WireGuard was given.
	paths := n.nat.current()
	if n.disc != nil {
		for _, mem := range n.plan.Load().Members {
			s := stats[mem.WireGuard.Key()]
			ms := api.MemberStatus{
				Name: mem.Name, Addr: mem.Addr, State: apiState(mem.State), Roles: mem.Roles,
				Path: "-", LastHandshake: s.hs, RxBytes: s.rx, TxBytes: s.tx,
				NATSClientPort: mem.NATSClientPort,
			}
			if s.hasEP && !s.hs.IsZero() {
				ms.Path = "direct " + s.ep
			}
			path, hasPath := paths[mem.Node]
			if hasPath {
				ms.Path, ms.Via = path.String(), path.ViaName
			}
			switch {
			case mem.State == discovery.StateLeft:
				// Left on purpose: not a fault.
			case mem.State != discovery.StateAlive:
				st.Problems = append(st.Problems, fmt.Sprintf("member %s is %s", mem.Name, ms.State))
			case hasPath && path.Kind == PathRelay:
				// Reached through its hub: its own peer's handshake
				// age says nothing.
			case hasPath && path.Kind == PathNone:
				st.Problems = append(st.Problems, fmt.Sprintf("member %s: no path (%s)", mem.Name, path.Reason))
			case s.hs.IsZero():
				st.Problems = append(st.Problems, fmt.Sprintf("member %s: no WireGuard handshake yet", mem.Name))
			case now.Sub(s.hs) > handshakeFresh:
				st.Problems = append(st.Problems, fmt.Sprintf("member %s: last handshake %s ago", mem.Name, now.Sub(s.hs).Round(time.Second)))
			}
			st.Members = append(st.Members, ms)
		}
	}
	// Revoked members are listed apart, and are no problem: gone on
	// purpose, for good.
	self := m.ID.Public()
	for _, r := range n.revs.List() {
		if r.Node != self {
			st.Revoked = append(st.Revoked, revokedEntry(r, m.Trust, false))
		}
	}
	slices.SortFunc(st.Revoked, func(a, b api.Revoked) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), a.Time.Compare(b.Time))
	})
	st.Problems = append(st.Problems, n.plan.Load().Problems()...)
	if n.nats != nil {
		ns := n.nats.Status()
		st.NATS = api.NATSStatus{
			ServerName: m.Ticket.Name,
			ClientURL:  "tls://" + net.JoinHostPort(m.Ticket.Addr.String(), strconv.Itoa(n.cfg.NATSClientPort)),
			RoutesUp:   ns.RoutesUp, RoutesExpected: ns.RoutesExpected, RouteServers: ns.RouteNames, JetStream: jetStreamString(ns.JetStream),
		}
		for _, r := range ns.Routes {
			st.NATS.Routes = append(st.NATS.Routes, api.RouteConn{ID: r.ID, Remote: r.Remote, Start: r.Start})
		}
		natsRole(&st, ns)
		if ns.JetStream.Waiting {
			st.Problems = append(st.Problems, fmt.Sprintf("JetStream waits for %d of %d members (core NATS is up)", ns.JetStream.Known, ns.JetStream.Expect))
		}
		if ns.JetStream.AdoptError != "" {
			st.Problems = append(st.Problems, "JetStream: a standalone stream is not adopted: "+ns.JetStream.AdoptError)
		}
		if ns.RoutesUp < ns.RoutesExpected {
			st.Problems = append(st.Problems, fmt.Sprintf("NATS routes %d of %d up", ns.RoutesUp, ns.RoutesExpected))
		}
	}
	n.phoneStatus(&st)
	st.Healthy = len(st.Problems) == 0
	return st
}

// apiState is a member's state as the local API reports it.
func apiState(s discovery.State) api.State {
	switch s {
	case discovery.StateAlive:
		return api.StateAlive
	case discovery.StateDead:
		return api.StateDead
	case discovery.StateLeft:
		return api.StateLeft
	default:
		return api.StateUnknown
	}
}

type wgStat struct {
	ep     string
	hasEP  bool
	hs     time.Time
	rx, tx int64
}

func jetStreamString(js natsnode.JetStreamStatus) string {
	switch {
	case !js.Configured:
		return "off"
	case js.Waiting:
		return fmt.Sprintf("waiting for %d of %d members", js.Known, js.Expect)
	case js.Standalone:
		return "ok, standalone (no other member yet)"
	case js.Adopting > 0:
		return fmt.Sprintf("adopting %d standalone streams", js.Adopting)
	case js.MetaLeader != "":
		return fmt.Sprintf("ok, meta leader %s, %d servers", js.MetaLeader, js.ClusterSize)
	default:
		return "enabled, no meta leader yet"
	}
}
