package mesh

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/discovery/enroll"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/mesh/metrics"
	"github.com/meshnode/meshnode/mesh/wg"
	"github.com/meshnode/meshnode/natsnode"
)

// Node is one running mesh member: the embeddable core that the CLI, the
// appliance and the tests all drive.
type Node struct {
	cfg    Config
	log    *slog.Logger
	member *identity.Member
	revs   *identity.RevocationSet

	dev   *wg.Device
	disc  *discovery.Discovery
	nats  *natsnode.Server
	eps   []netip.AddrPort
	ready chan struct{}
	leave chan struct{}
	// evictKick wakes evictLoop (revoked members out of JetStream).
	evictKick chan struct{}
	// deathWake asks Run for a reconcile when a NATS death verdict comes
	// due (natsdead.go); deathTimer, under reconcileMu, sends on it.
	deathWake  chan struct{}
	deathTimer *time.Timer
	// witness judges gossip's deaths against WireGuard (natsdead.go).
	witness deathWitness

	reconcileMu sync.Mutex // one reconcile at a time (loop and enrollment)
	// natsCore is whether NATS runs as a core member (set once, before
	// NATS starts); natsCoreWarned whether the plan's disagreeing role
	// was logged (under reconcileMu; see noteCoreChange).
	natsCore, natsCoreWarned bool
	leaveOne                 sync.Once

	// plan is the last reconcile's plan (New stores one that knows only
	// this node). Readers, NATS admission on every connection and status,
	// load it without a lock; reconcile swaps it under reconcileMu.
	plan atomic.Pointer[Plan]
	// drops logs what the plans leave out, once (under reconcileMu).
	drops dropLog

	phones phoneState // reconcile's memory for phones (phone.go)

	// nat is the path machine and the observed endpoints (observe.go).
	nat natState

	// enrollStats reads the enrollment endpoint's counters for metrics;
	// set by serveEnrollment before the servers that scrape start.
	enrollStats func() metrics.Enroll
	// cur is the membership as last renewed (member is the one loaded at
	// start: its identity, name, address and trust never change).
	cur atomic.Pointer[identity.Member]
	// tlsCert is the certificate NATS presents (routes and clients); a
	// renewal swaps it for new handshakes.
	tlsCert   *identity.CertHolder
	enrollSrv atomic.Pointer[enroll.Server]
	renew     renewer
	keys      keyFetch // the gossip key fetch loop (gossipkey.go)
}

// New loads an enrolled node from its state directory. It changes nothing
// on the box; Run brings the node up.
func New(cfg Config, log *slog.Logger) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	m, err := cfg.StateDir.LoadMember(time.Now())
	if err != nil {
		return nil, err
	}
	revs, err := identity.LoadRevocations(cfg.StateDir.RevocationsPath(), m.Trust)
	if err != nil {
		return nil, err
	}
	if r, ok := revs.Get(m.ID.Public()); ok {
		return nil, &RevokedError{Name: m.Ticket.Name, Revocation: r}
	}
	eps, err := cfg.ParseEndpoints()
	if err != nil {
		return nil, err
	}
	if len(eps) == 0 {
		eps = LocalEndpoints(cfg.ListenPort, cfg.Interface)
	}
	tlsCert, err := m.ID.TLSCertificate(m.Cert)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg: cfg, log: log.With("node", m.Ticket.Name), member: m, revs: revs, eps: eps,
		ready: make(chan struct{}), leave: make(chan struct{}), evictKick: make(chan struct{}, 1),
		deathWake: make(chan struct{}, 1),
		tlsCert:   identity.NewCertHolder(tlsCert),
	}
	n.cur.Store(m)
	n.renew.now = make(chan struct{}, 1)
	// Where the admins were when this node last ran, expired tickets and
	// all: a node that was off across its expiry renews from them.
	if admins, err := discovery.KnownAdmins(cfg.StateDir.MembersPath(), m.Trust, revs); err == nil {
		n.renew.admins = admins
	} else {
		n.log.Warn("member table unreadable: renewal will only find admins through gossip", "err", err)
	}
	if why := n.degraded(time.Now()); why != "" {
		n.log.Warn("starting degraded: renewing before anything else", "why", why)
	}
	n.nat = natState{
		mode: cfg.pathMode(), paths: NewPaths(), adv: eps,
		observed: map[identity.NodePublic]observation{}, reports: map[identity.NodePublic]HubReport{},
	}
	// Until the first reconcile the plan knows this node alone: whatever
	// asks early is refused unless it is this node.
	n.plan.Store(NewPlan(n.snapshot()))
	return n, nil
}

// Name is the node's name in the mesh.
func (n *Node) Name() string { return n.member.Ticket.Name }

// Addr is the node's overlay address.
func (n *Node) Addr() netip.Addr { return n.member.Ticket.Addr }

// Ready is closed once the node is up: interface, gossip, NATS, APIs.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Run brings the node up and keeps its WireGuard peers and NATS routes in
// step with membership until ctx ends or Leave is called; then it leaves
// gossip gracefully and removes the interface and sockets.
func (n *Node) Run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	m := n.member

	n.dev, err = wg.Open(wg.Config{
		Name: n.cfg.Interface, PrivateKey: m.ID.WireGuardPrivate(),
		Address: m.Ticket.Addr, Prefix: m.Trust.Prefix(),
		ListenPort: n.cfg.ListenPort, MTU: n.cfg.MTU, Logger: n.log,
	})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		if err := n.dev.Close(); err != nil {
			n.log.Warn("close WireGuard device", "err", err)
		}
	})

	n.disc, err = discovery.New(discovery.Config{
		Member: m, Revocations: n.revs,
		RevocationsPath: n.cfg.StateDir.RevocationsPath(), MembersPath: n.cfg.StateDir.MembersPath(),
		PhonesPath: n.cfg.StateDir.PhonesPath(), GossipKeysPath: n.cfg.StateDir.GossipKeysPath(), BindAddr: m.Ticket.Addr, Port: n.cfg.GossipPort, Endpoints: n.eps,
		NATSClientPort: uint16(n.cfg.NATSClientPort), NATSRoutePort: uint16(n.cfg.NATSRoutePort),
		Fast: n.cfg.FastTimers, NeverSeen: n.cfg.NeverSeenTimeout, LabEndpoints: n.cfg.LabEndpoints, Logger: n.log,
	})
	if err != nil {
		return err
	}
	// Persisted members become WireGuard peers before anything needs to
	// reach them: gossip itself runs inside the overlay.
	n.reconcile()
	if err := n.disc.Start(ctx); err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		// A revoked node has no one to say goodbye to: every member
		// blocks its gossip.
		if n.selfRevoked() != nil {
			n.disc.Shutdown()
			return
		}
		if err := n.disc.Leave(2 * time.Second); err != nil {
			n.log.Warn("leave gossip", "err", err)
		}
		n.disc.Shutdown()
	})

	// reconcile above built the first plan: it says whether this node is
	// a core or a leaf member (natsconfig.go), NATS starts with its
	// routes or leaf remotes and asks it from the first connection.
	first := n.plan.Load()
	n.natsCore = first.Core
	n.nats, err = natsnode.New(n.natsConfig(first))
	if err != nil {
		return err
	}
	n.nats.SetMembers(first.NATSMembers())
	if err := n.nats.Start(ctx); err != nil {
		return err
	}
	cleanups = append(cleanups, n.nats.Shutdown)
	evictCtx, stopEvict := context.WithCancel(ctx)
	evictDone := make(chan struct{})
	go func() { defer close(evictDone); n.evictLoop(evictCtx) }()
	// Stopped before NATS is: it asks the server.
	cleanups = append(cleanups, func() { stopEvict(); <-evictDone })

	stopEnroll, err := n.serveEnrollment(ctx)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopEnroll)

	stopAPI, err := serveAPI(ctx, n.cfg.StateDir.APISocketPath(), n, n.log.With("component", "api"))
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopAPI)

	stopPaths, err := n.startPaths(ctx)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopPaths)

	if n.cfg.MetricsAddr != "" {
		stopMetrics, err := serveMetrics(n.cfg.MetricsAddr, n, n.log.With("component", "metrics"))
		if err != nil {
			return err
		}
		cleanups = append(cleanups, stopMetrics)
	}
	n.rotateIfDue()
	var renewWG sync.WaitGroup
	renewWG.Add(2)
	go func() { defer renewWG.Done(); n.renewLoop(ctx) }()
	go func() { defer renewWG.Done(); n.gossipKeyLoop(ctx) }()
	cleanups = append(cleanups, func() { cancel(); renewWG.Wait() })

	n.log.Info("node up", "addr", m.Ticket.Addr, "interface", n.cfg.Interface, "port", n.cfg.ListenPort, "endpoints", n.eps)
	close(n.ready)

	tick := time.NewTicker(defaults.ReconcileInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			n.log.Info("stopping", "why", context.Cause(ctx))
			return nil
		case <-n.leave:
			n.log.Info("leaving the mesh on request")
			return nil
		case <-n.disc.Changes():
			n.reconcile()
		case <-tick.C:
			n.reconcile()
		case <-n.deathWake:
			n.reconcile()
		}
		if rev := n.selfRevoked(); rev != nil {
			// Gossip told us (every member sends a revoked member its
			// record before blocking it). The mesh refuses this node
			// everywhere already; stopping says so clearly instead of
			// running on alone.
			r := rev.Revocation
			n.log.Error("this node has been revoked from the mesh: stopping", "by", r.Issuer, "at", r.Time, "reason", r.Reason)
			return rev
		}
	}
}

// Leave asks Run to leave the mesh gracefully and return.
func (n *Node) Leave() error {
	n.leaveOne.Do(func() { close(n.leave) })
	return nil
}

// reconcile turns the member table into a new plan and applies it:
// WireGuard peers, then NATS routes, then a recheck of open NATS clients
// against the new plan. It is idempotent: with no membership change it
// changes nothing. The plan is published before it is applied, so NATS
// admission never lags the peers that WireGuard is given.
func (n *Node) reconcile() {
	if n.dev == nil || n.disc == nil {
		return
	}
	n.reconcileMu.Lock()
	defer n.reconcileMu.Unlock()
	now := time.Now()
	s := n.snapshot()
	// Peers read before Apply: the handshakes WireGuard has seen so far,
	// for the death witness and the cut-off set alike (a handshake in the
	// milliseconds until applyCutOff counts on the next reconcile; its
	// grace is 15 s).
	peers, err := n.dev.Peers()
	if err != nil {
		n.log.Warn("read WireGuard peers", "err", err)
	}
	var wake time.Time
	s.KeepRoutes, wake = n.witness.judge(s.Members, peers, s.Paths, nodeAsker{n.dev}, n.log, now)
	n.wakeForDeath(wake, now)
	p := NewPlan(s)
	n.plan.Store(p)
	n.drops.note(n.log, p.Dropped)
	// The device logs what it changed ("wireguard peers applied"); this
	// used to log the same change a second time.
	if _, err := n.dev.Apply(p.AllPeers()); err != nil {
		n.log.Error("apply WireGuard peers", "err", err)
	}
	n.applyPhones(p)
	n.applyCutOff(p, peers, time.Now())
	if n.nats != nil {
		n.noteCoreChange(p)
		n.nats.SetMembers(p.NATSMembers())
		n.nats.Recheck()
	}
	n.kickEvict()
}

// snapshot gathers what a plan is computed from. Discovery's table is
// copied once here, not on every NATS connection; before discovery exists
// the snapshot holds this node alone.
func (n *Node) snapshot() Snapshot {
	t := n.current().Ticket
	s := Snapshot{
		Self: Self{Name: t.Name, Node: n.member.ID.Public(), Addr: t.Addr, RoutePort: n.cfg.NATSRoutePort, LeafPort: n.cfg.NATSLeafPort, Roles: t.Roles,
			WireGuard: t.WireGuard, Prefix: n.member.Trust.Prefix()},
		Revoked: n.revs, Endpoints: n.eps,
		Paths: n.nat.current(), Mode: n.nat.mode,
	}
	for _, r := range n.revs.List() {
		s.RevokedNodes = append(s.RevokedNodes, r.Node)
	}
	if n.disc != nil {
		s.Members = n.disc.Members()
		s.Phones, s.ActivePhones = n.disc.Phones(), n.phones.active
	}
	return s
}

// authorizeClient, clientRole and allowRoute are natsnode's predicates: the current
// plan decides, without copying or sorting anything per connection.
func (n *Node) authorizeClient(k identity.NodePublic) bool {
	return n.plan.Load().AuthorizeClient(k)
}

func (n *Node) clientRole(k identity.NodePublic) natsnode.Role {
	return n.plan.Load().ClientRole(k)
}

func (n *Node) allowRoute(remote netip.Addr, cert *x509.Certificate) bool {
	return n.plan.Load().AllowRoute(remote, cert)
}

func (n *Node) allowLeaf(remote netip.Addr, cert *x509.Certificate) bool {
	return n.plan.Load().AllowLeaf(remote, cert)
}

// LocalEndpoints lists this box's global unicast addresses at port, for
// members to dial when no endpoint was configured. The mesh interface (which
// holds the overlay address) is skipped.
func LocalEndpoints(port int, skipIface string) []netip.AddrPort {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.AddrPort
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || ifc.Name == skipIface {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if !ip.IsGlobalUnicast() {
				continue
			}
			out = append(out, netip.AddrPortFrom(ip, uint16(port)))
		}
	}
	return out
}

var errNoCA = errors.New("this node does not hold the mesh CA and cannot admit members")

// Invite mints a one-time join token (admin nodes only).
func (n *Node) Invite(ttl time.Duration, roles identity.Roles) (string, error) {
	if n.member.CA == nil {
		return "", errNoCA
	}
	return identity.OpenInvites(n.cfg.StateDir.InvitesPath(), n.member.Trust).New(ttl, roles, time.Now())
}

// serveEnrollment listens on the underlay for join and hello requests
// until ctx ends or the returned func is called. A node holding the CA
// admits newcomers; every node answers hello (and a join with the name of
// an admin to ask instead).
func (n *Node) serveEnrollment(ctx context.Context) (func(), error) {
	var invites *identity.Invites
	var issued *identity.Issued
	if n.member.CA != nil {
		invites = identity.OpenInvites(n.cfg.StateDir.InvitesPath(), n.member.Trust)
		issued = identity.OpenIssued(n.cfg.StateDir.IssuedPath())
	}
	srv, err := enroll.NewServer(enroll.ServerConfig{
		Member: n.member, Invites: invites, Issued: issued, Members: n.disc, Revocations: n.revs, GossipKeys: n.disc,
		Mesh: enroll.MeshParams{GossipPort: n.cfg.GossipPort, BootstrapExpect: n.cfg.BootstrapExpect,
			MemberValiditySeconds: int64(n.cfg.MemberValidity / time.Second), LabEndpoints: n.cfg.LabEndpoints,
			MaxCore: n.cfg.MaxCore},
		// The newcomer becomes a WireGuard peer before the answer goes
		// out, so its first handshake already finds us ready.
		OnAdmit: func(m discovery.Member) {
			n.log.Info("admitted", "member", m.Name, "addr", m.Addr, "endpoints", m.Endpoints)
			n.reconcile()
		},
		Logger: n.log,
	})
	if err != nil {
		return nil, err
	}
	// The node may have renewed between New and here.
	if err := srv.SetCertificate(n.current().Cert); err != nil {
		return nil, err
	}
	n.enrollSrv.Store(srv)
	ln, err := net.Listen("tcp", n.cfg.EnrollAddr)
	if err != nil {
		return nil, fmt.Errorf("enrollment endpoint --enroll-addr %s: %w", n.cfg.EnrollAddr, err)
	}
	// Set before the local API and the metrics listener start, which are
	// the only readers.
	n.enrollStats = func() metrics.Enroll {
		st := srv.Stats()
		return metrics.Enroll{Admitted: st.JoinsAdmitted, Refused: st.JoinsRefused, RateLimited: st.RateLimited}
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("enrollment endpoint stopped", "err", err)
		}
	}()
	// Stop admitting as soon as the node is told to stop, not when the
	// shutdown reaches this step: an admission would reconcile peers on a
	// device that is being closed.
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	return func() { stop(); srv.Close() }, nil
}
