package mesh

import (
	"fmt"
	"net"
	"strconv"

	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/natsnode"
)

// natsConfig is the embedded nats-server's configuration for a core or a
// leaf member (plancore.go). A core member runs the route cluster (core
// members only) and JetStream, and listens for leaf members on its
// overlay address with the same mutual mesh-CA TLS as routes. A leaf
// member runs neither: its server connects to one alive core member as a
// NATS leaf node, proving the node's nkey, and its clients use the core's
// JetStream through that connection. Both TLS configs ask tlsCert on
// every handshake: a renewal reaches new routes, leaf connections and
// clients without a reload, and open ones stay up.
func (n *Node) natsConfig(p *Plan) natsnode.Config {
	m := n.member
	host := m.Ticket.Addr.String()
	cfg := natsnode.Config{
		ServerName: m.Ticket.Name, StoreDir: n.cfg.StateDir.NATSDir(),
		Host: host, ClientPort: n.cfg.NATSClientPort,
		ClientTLS: n.tlsCert.ServerTLS(m.Trust),
		Authorize: n.authorizeClient, Role: n.clientRole, PhoneGrant: n.phoneGrant,
		Logger: n.log,
	}
	if !p.Core {
		cfg.Leaf = natsnode.LeafConfig{Solicit: true, TLS: n.tlsCert.RouteTLS(m.Trust), NKeySeed: string(m.ID.NKeySeedText())}
		return cfg
	}
	cfg.Cluster = natsnode.ClusterConfig{
		Name: m.Trust.Mesh, Host: host, Port: n.cfg.NATSRoutePort,
		Advertise:   net.JoinHostPort(host, strconv.Itoa(n.cfg.NATSRoutePort)),
		RouteSecret: m.RouteSecret, RouteTLS: n.tlsCert.RouteTLS(m.Trust),
		AllowRoute: n.allowRoute,
	}
	cfg.Leaf = natsnode.LeafConfig{Host: host, Port: n.cfg.NATSLeafPort, TLS: n.tlsCert.RouteTLS(m.Trust), AllowLeaf: n.allowLeaf}
	cfg.JetStream = natsnode.JetStreamConfig{
		Enabled: true, MaxMemory: n.cfg.JetStreamMaxMemory, MaxStore: n.cfg.JetStreamMaxStore,
		BootstrapExpect: bootstrapExpect(n.cfg.BootstrapExpect, n.cfg.MaxCore, p.coreMesh),
	}
	return cfg
}

// bootstrapExpect is the JetStream bootstrap_expect of a core member:
// only core members join the meta group, so in a mesh with core members
// it is at most max_core (a mesh of --max-core 2 would otherwise wait for
// a third core member forever).
func bootstrapExpect(expect, maxCore int, coreMesh bool) int {
	if coreMesh && maxCore > 0 && expect > maxCore {
		return maxCore
	}
	return expect
}

// NATSMembers is what natsnode.SetMembers gets: the route set of a core
// member, the leaf remotes of a leaf.
func (p *Plan) NATSMembers() []natsnode.Member {
	if p.Core {
		return p.Routes
	}
	return p.LeafRemotes
}

// noteCoreChange logs, once per change, a plan that no longer agrees with
// the mode NATS started in: the server's mode is fixed for the process
// (a leaf has no JetStream store to bring into the meta group, a core
// member's store would be orphaned), so the change takes a restart.
// Tickets keep their role on renewal and admission decides it once, so
// this happens only in odd meshes: every core member revoked (the mesh
// falls back to all core), or a leaf admitted again as core.
// Under reconcileMu.
func (n *Node) noteCoreChange(p *Plan) {
	if p.Core == n.natsCore {
		n.natsCoreWarned = false
		return
	}
	if n.natsCoreWarned {
		return
	}
	n.natsCoreWarned = true
	n.log.Warn("this node's NATS role changed since NATS started; it takes effect at the next restart",
		"running_as_core", n.natsCore, "plan_core", p.Core)
}

// natsRole fills the status's core/leaf part: the role, and on a leaf the
// core member it is connected to (a problem while it is connected to
// none although core members are alive).
func natsRole(st *api.Status, ns natsnode.Status) {
	st.NATS.Leaves = len(ns.Leafs)
	if !ns.Leaf {
		st.NATS.Role = api.NATSRoleCore
		return
	}
	st.NATS.Role = api.NATSRoleLeaf
	st.NATS.LeafCore = ns.LeafExpected
	st.NATS.JetStream = "through the core (leaf)"
	if len(ns.Leafs) > 0 {
		st.NATS.LeafOf = ns.Leafs[0].Remote
	}
	switch {
	case ns.LeafExpected == 0:
		st.Problems = append(st.Problems, "NATS leaf: no alive core member to connect to")
	case st.NATS.LeafOf == "":
		st.Problems = append(st.Problems, fmt.Sprintf("NATS leaf: not connected to any of %d core members", ns.LeafExpected))
	}
}
