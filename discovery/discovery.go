package discovery

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// Defaults, from mesh/defaults.
const (
	DefaultPort      = defaults.GossipPort
	DefaultRetention = defaults.MemberRetention
	// MTU is the overlay MTU gossip packets must fit in.
	MTU = defaults.MTU
	// udpBufferSize is the largest gossip datagram: the MTU minus the IPv6
	// and UDP headers.
	udpBufferSize = MTU - 40 - 8
)

// Config configures a node's discovery.
type Config struct {
	// Member is this node's enrolled identity (ID, Trust, Ticket, Cert).
	Member *identity.Member
	// Revocations is the set shared with the rest of the node; nil loads
	// RevocationsPath (or starts empty without one).
	Revocations *identity.RevocationSet
	// RevocationsPath and MembersPath are where revocations and the
	// member table are persisted; empty disables persistence.
	RevocationsPath, MembersPath string
	// Phones is the phone ticket set shared with the rest of the node; nil
	// loads PhonesPath (or starts empty). PhonesPath persists it.
	Phones     *identity.PhoneSet
	PhonesPath string
	// BindAddr is where gossip listens; default GossipAddr(own ticket).
	BindAddr netip.Addr
	// Port is the gossip port of every member (default 7946).
	Port int
	// Endpoints are this node's underlay WireGuard endpoints.
	Endpoints []netip.AddrPort
	// NATSClientPort and NATSRoutePort are advertised to other members.
	NATSClientPort, NATSRoutePort uint16
	// Routes are extra prefixes this node advertises (phones of a hub).
	Routes []netip.Prefix
	// GossipAddr is where a member's gossip listens. Production: nil,
	// meaning the ticket's overlay address. Tests map tickets to loopback
	// addresses so that in-process meshes need no root.
	GossipAddr func(*identity.Ticket) netip.Addr
	// Fast selects short timers for tests; LAN timers otherwise.
	Fast bool
	// LabEndpoints admits members whose meta advertises loopback,
	// link-local or other internal endpoints (CheckDialable): a lab mesh
	// on one host. Off, such a member is not admitted.
	LabEndpoints bool
	// Retention is how long dead or unseen members are kept (default 72h).
	Retention time.Duration
	// NeverSeen is how long a member known only from an enrollment (Admit:
	// a join, hello or renewal) is kept while gossip never sees it alive
	// (default defaults.NeverSeenTimeout). A newcomer that was admitted
	// but never came up must not stay a WireGuard peer for Retention.
	NeverSeen time.Duration
	// GossipKeysPath persists the rotated gossip keys (gossip.keys);
	// empty keeps them in memory only (epoch 0 is always derived).
	GossipKeysPath string
	// GossipKeyUseAfter and GossipKeyRetireAfter are the delays of a
	// rotation this node makes (RotateGossipKey); defaults from
	// mesh/defaults, or 2 s and 5 s with Fast.
	GossipKeyUseAfter, GossipKeyRetireAfter time.Duration
	Logger                                  *slog.Logger
	// Transport makes the transport gossip runs over (transport.go);
	// nil is NetTransport, UDP and TCP on BindAddr:Port. Simulations pass
	// an in-memory network's. Revoked members are filtered on any.
	Transport TransportFactory

	// drop, when set (tests only), blocks gossip to and from an address
	// in addition to revoked members: a network partition.
	drop func(netip.Addr) bool
	// tune, when set (tests only), adjusts memberlist's settings before
	// Start creates it: simulations scale timers to their network.
	tune func(*memberlist.Config)
}

// Discovery is a running member of the gossip mesh.
type Discovery struct {
	cfg   Config
	log   *slog.Logger
	id    *identity.Identity
	trust *identity.Trust
	revs  *identity.RevocationSet
	// phones are the CA-signed phone tickets (phones.go).
	phones *identity.PhoneSet
	self   string // own name

	mu        sync.Mutex
	table     map[string]*Member // by name
	local     *meta
	localMeta []byte

	cacheMu  sync.Mutex
	verified map[string]*meta

	rejMu      sync.Mutex
	rejections map[string]int
	rejLogged  map[string]bool
	refusalLog *rate.Limiter // refusal log lines (rejMu is not needed: it locks itself)

	blockMu sync.RWMutex
	blocked map[netip.Addr]bool

	// keys is the gossip keyring and the rotation state (gossipkeys.go).
	keys gossipKeys

	alive   atomic.Int32 // alive members, for broadcast retransmits
	stats   counters
	changes chan struct{}
	dirty   chan struct{}
	revIn   chan []*identity.Revocation
	phoneIn chan []*identity.PhoneTicket
	queue   *memberlist.TransmitLimitedQueue
	// created is when New ran: members recorded as left before it are
	// rejoined like the others (see rejoinTargets).
	created time.Time

	ml       *memberlist.Memberlist
	closed   bool // Shutdown ran: memberlist must not be called again
	saveMu   sync.Mutex
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Start loads the persisted member table and joins the mesh: New followed
// by (*Discovery).Start.
func Start(ctx context.Context, cfg Config) (*Discovery, error) {
	d, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := d.Start(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// New checks the configuration and loads the persisted member table and
// revocations, without touching the network: Known is usable at once, so
// the node can configure WireGuard peers before gossip needs them.
func New(cfg Config) (*Discovery, error) {
	m := cfg.Member
	if m == nil || m.ID == nil || m.Trust == nil || m.Ticket == nil {
		return nil, errors.New("discovery: Config.Member needs ID, Trust and Ticket")
	}
	now := time.Now()
	// An expired own ticket is accepted: the node starts degraded to renew
	// it, and members refuse its meta until it has (SetTicket).
	if err := m.ID.CheckOwnSignature(m.Ticket, m.Trust); err != nil {
		return nil, fmt.Errorf("discovery: own %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.GossipAddr == nil {
		cfg.GossipAddr = func(t *identity.Ticket) netip.Addr { return t.Addr }
	}
	if !cfg.BindAddr.IsValid() {
		cfg.BindAddr = cfg.GossipAddr(m.Ticket)
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("discovery: gossip port %d out of range", cfg.Port)
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.NeverSeen <= 0 {
		cfg.NeverSeen = defaults.NeverSeenTimeout
	}
	if cfg.Revocations == nil {
		cfg.Revocations = identity.NewRevocationSet(m.Trust)
		if cfg.RevocationsPath != "" {
			rs, err := identity.LoadRevocations(cfg.RevocationsPath, m.Trust)
			if err != nil {
				return nil, fmt.Errorf("discovery: %w", err)
			}
			cfg.Revocations = rs
		}
	}
	if cfg.Revocations.IsRevoked(m.ID.Public()) {
		return nil, fmt.Errorf("discovery: this node (%s) has been revoked", m.Ticket.Name)
	}
	d := &Discovery{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "discovery"),
		id:         m.ID,
		trust:      m.Trust,
		revs:       cfg.Revocations,
		self:       m.Ticket.Name,
		table:      map[string]*Member{},
		verified:   map[string]*meta{},
		rejections: map[string]int{},
		rejLogged:  map[string]bool{},
		refusalLog: newRefusalLog(),
		blocked:    map[netip.Addr]bool{},
		changes:    make(chan struct{}, 1),
		dirty:      make(chan struct{}, 1),
		revIn:      make(chan []*identity.Revocation, 64),
		created:    time.Now(),
		phoneIn:    make(chan []*identity.PhoneTicket, 64),
	}
	if err := d.loadPhones(now); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	d.cfg.GossipKeyUseAfter, d.cfg.GossipKeyRetireAfter = gossipKeyDelays(cfg.Fast, cfg.GossipKeyUseAfter, cfg.GossipKeyRetireAfter)
	if err := d.initGossipKeys(); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	d.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(d.alive.Load()) },
		RetransmitMult: 4,
	}
	d.local = &meta{
		ticket:         m.Ticket,
		seq:            uint64(now.UnixNano()),
		natsClientPort: cfg.NATSClientPort,
		natsRoutePort:  cfg.NATSRoutePort,
		endpoints:      slices.Clone(cfg.Endpoints),
		routes:         slices.Clone(cfg.Routes),
	}
	b, err := d.local.sign(d.id)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	d.localMeta = b
	self := memberFrom(m.Ticket, d.local, nil)
	self.State, self.LastChange, self.Self = StateAlive, now, true
	d.table[d.self] = &self
	d.alive.Store(1)

	if cfg.MembersPath != "" {
		known, err := readMembers(cfg.MembersPath, d.trust, d.revs, now, func(err error) {
			d.log.Warn("member table: dropping a member that no longer verifies", "err", err)
		})
		if err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		for _, k := range known {
			if k.Name == d.self || k.Node == d.id.Public() {
				continue
			}
			if k.State == StateAlive {
				// Seen alive before our restart: unknown since, and
				// retention counts from now.
				k.State, k.LastChange = StateUnknown, now
			}
			if now.Sub(k.LastChange) > cfg.Retention {
				continue
			}
			if old := d.table[k.Name]; old != nil && old.LastChange.After(k.LastChange) {
				continue
			}
			d.table[k.Name] = &k
		}
	}
	return d, nil
}

// memberlistConfig maps Config onto memberlist's settings.
func (d *Discovery) memberlistConfig() *memberlist.Config {
	var mc *memberlist.Config
	if d.cfg.Fast {
		mc = memberlist.DefaultLocalConfig()
		mc.TCPTimeout = 2 * time.Second
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 150 * time.Millisecond
		mc.GossipInterval = 30 * time.Millisecond
		mc.PushPullInterval = 2 * time.Second
		mc.GossipToTheDeadTime = 3 * time.Second
		mc.SuspicionMult = 3
		mc.RetransmitMult = 4 // as on a LAN: fewer members missing an update until push/pull
	} else {
		mc = memberlist.DefaultLANConfig()
		// A newcomer learns members that joined at the same moment only
		// through a full state exchange; at the LAN default of 30 s an
		// 8-node mesh sometimes stalled that long (benchmark). Meshes are
		// small and the exchange is one TCP round trip with one member, so
		// do it every 5 s (memberlist still scales it up for large meshes).
		mc.PushPullInterval = 5 * time.Second
		// A dead member is declared after about one probe round plus
		// SuspicionMult × ProbeInterval (× log10 n beyond 10 members). At
		// the LAN default of 4 a kill -9 took 5.5-7.5 s to reach every
		// survivor; 3 takes a second off, and Lifeguard's confirmations
		// still stretch the timeout when a suspicion is not confirmed.
		mc.SuspicionMult = 3
	}
	bind := d.cfg.BindAddr.String()
	mc.Name = d.self
	mc.BindAddr, mc.BindPort = bind, d.cfg.Port
	mc.AdvertiseAddr, mc.AdvertisePort = bind, d.cfg.Port
	mc.Label = d.trust.Mesh
	// Every packet and stream is sealed with the mesh's gossip key
	// (AES-256-GCM, memberlist's keyring), and nothing unsealed is
	// accepted: the signed meta authenticates alive messages only, while
	// dead/suspect messages and push/pull carry no signature of their own.
	// WireGuard already authenticates the sending box; the key shuts out a
	// process on a member box that can reach the overlay but cannot read
	// the state directory. The keyring holds every key of the schedule
	// (gossipkeys.go): after a rotation the revoked box's key is removed.
	mc.Keyring = d.memberlistKeyring()
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.UDPBufferSize = udpBufferSize
	// No LZW: it builds a fresh table per message and was the largest
	// CPU cost of gossip in the 1,000-member simulation (31 %, most of it
	// compressing push/pull state) while shrinking a signed meta only
	// from about 450 to 370 bytes. Receivers still accept compressed
	// messages from older members.
	mc.EnableCompression = false
	mc.Delegate = (*delegate)(d)
	mc.Events = (*events)(d)
	mc.Alive = (*delegate)(d)
	mc.Merge = (*delegate)(d)
	mc.Ping = (*delegate)(d)
	mc.Logger = log.New(&logWriter{d.log}, "", 0)
	mc.LogOutput = nil
	return mc
}

// Start binds gossip and joins the known members; it returns once gossip
// listens. ctx bounds the background loops; Shutdown releases everything.
func (d *Discovery) Start(ctx context.Context) error {
	d.mu.Lock()
	running := d.ml != nil || d.closed
	d.mu.Unlock()
	if running {
		return errors.New("discovery: already started or shut down")
	}
	mc := d.memberlistConfig()
	if d.cfg.tune != nil {
		d.cfg.tune(mc)
	}
	tr, err := d.newTransport(mc.Logger)
	if err != nil {
		return err
	}
	mc.Transport = tr
	ml, err := memberlist.Create(mc)
	if err != nil {
		mc.Transport.Shutdown()
		return fmt.Errorf("discovery: %w", err)
	}
	d.mu.Lock()
	d.ml = ml
	d.mu.Unlock()
	ctx, d.cancel = context.WithCancel(ctx)
	d.wg.Add(3)
	go d.worker(ctx)
	go d.rejoin(ctx)
	go d.keyLoop(ctx)
	d.log.Info("gossip started", "name", d.self, "addr", netip.AddrPortFrom(d.cfg.BindAddr, uint16(d.cfg.Port)), "known", len(d.Known()))
	d.notify()
	return nil
}

// Known returns every member the node knows of except itself, whatever
// its state: the WireGuard peers to configure (so that gossip can reach
// them). It is usable before Start.
func (d *Discovery) Known() []Member {
	var out []Member
	for _, m := range d.Members() {
		if !m.Self {
			out = append(out, m)
		}
	}
	return out
}

// Members returns the member table, this node included, sorted by name.
// Revoked members are never in it; dead ones stay for Retention.
func (d *Discovery) Members() []Member {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Member, 0, len(d.table))
	for _, m := range d.table {
		out = append(out, m.clone())
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Changes signals that the member table changed. It holds at most one
// pending signal: consumers re-read Members after each receive.
func (d *Discovery) Changes() <-chan struct{} { return d.changes }

// Rejections counts the gossip nodes refused, by reason.
func (d *Discovery) Rejections() map[string]int {
	d.rejMu.Lock()
	defer d.rejMu.Unlock()
	out := make(map[string]int, len(d.rejections))
	for k, v := range d.rejections {
		out[k] = v
	}
	return out
}

func (d *Discovery) notify() {
	d.stats.lastChange.Store(time.Now().UnixNano())
	select {
	case d.changes <- struct{}{}:
	default:
	}
	select {
	case d.dirty <- struct{}{}:
	default:
	}
}

func (d *Discovery) memberlist() (*memberlist.Memberlist, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("discovery: shut down")
	}
	if d.ml == nil {
		return nil, errors.New("discovery: not started")
	}
	return d.ml, nil
}

func (d *Discovery) joinAddr(m *Member) (string, bool) {
	t, err := identity.ParseTicket(m.ticket)
	if err != nil {
		return "", false
	}
	a := d.cfg.GossipAddr(t)
	if !a.IsValid() {
		return "", false
	}
	return m.Name + "/" + net.JoinHostPort(a.String(), strconv.Itoa(d.cfg.Port)), true
}

// Join contacts the members at the given gossip addresses and reports how
// many answered.
func (d *Discovery) Join(addrs []netip.AddrPort) (int, error) {
	ml, err := d.memberlist()
	if err != nil {
		return 0, err
	}
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return ml.Join(s)
}

// SetLocal changes what this node advertises: it re-signs the meta with
// the next sequence number and pushes it to the mesh. It fails only when
// the endpoints or routes do not fit the meta (MaxEndpoints, MaxRoutes).
func (d *Discovery) SetLocal(endpoints []netip.AddrPort, routes []netip.Prefix) error {
	if err := d.resign(func(m *meta) {
		m.endpoints = slices.Clone(endpoints)
		m.routes = slices.Clone(routes)
	}); err != nil {
		return err
	}
	d.notify() // the self entry changed
	d.mu.Lock()
	ml, closed := d.ml, d.closed
	d.mu.Unlock()
	if ml == nil || closed {
		return nil // not running: the new meta goes out at Start
	}
	// A slow broadcast is no failure: the meta is ours already and
	// push/pull carries it to whoever the broadcast missed.
	if err := ml.UpdateNode(d.updateTimeout()); err != nil {
		d.log.Info("meta update still spreading", "err", err)
	}
	return nil
}

// SetTicket replaces this node's ticket (a renewal): the meta is re-signed
// with it and pushed to the mesh, so that members see the new expiry. The
// ticket must be valid now and name this node's identity, name and keys.
func (d *Discovery) SetTicket(t *identity.Ticket) error {
	if err := d.id.CheckOwn(t, d.trust, time.Now()); err != nil {
		return fmt.Errorf("discovery: new %w", err)
	}
	if t.Name != d.self {
		return fmt.Errorf("discovery: new ticket names %q, this node is %q", t.Name, d.self)
	}
	if err := d.resign(func(m *meta) { m.ticket = t }); err != nil {
		return err
	}
	d.notify()
	d.mu.Lock()
	ml, closed := d.ml, d.closed
	d.mu.Unlock()
	if ml == nil || closed {
		return nil
	}
	if err := ml.UpdateNode(d.updateTimeout()); err != nil {
		d.log.Info("meta update still spreading", "err", err)
	}
	return nil
}

// Learn adds members from another member's signed table (a renewal
// answer) that this node does not know, or knows with an older ticket, as
// not yet seen: a node that was away long enough to forget its peers gets
// them back to peer with and rejoin. Revoked, expired and self entries are
// ignored; members gossip sees are left as they are.
func (d *Discovery) Learn(members []Member) {
	now := time.Now()
	changed := false
	d.mu.Lock()
	for _, k := range members {
		if k.Name == d.self || k.Node == d.id.Public() || d.revs.IsRevoked(k.Node) || k.ticket == nil {
			continue
		}
		t, err := identity.ParseTicket(k.ticket)
		if err != nil || t.Verify(d.trust, now) != nil {
			continue
		}
		if old := d.table[k.Name]; old != nil {
			ot, err := identity.ParseTicket(old.ticket)
			if old.State == StateAlive || (err == nil && old.Node == k.Node && !ot.NotAfter.Before(t.NotAfter)) {
				continue
			}
		}
		m := k.clone()
		m.Self = false
		if m.State == StateAlive {
			m.State = StateUnknown
		}
		m.LastChange = now
		d.table[m.Name] = &m
		changed = true
	}
	d.mu.Unlock()
	if changed {
		d.notify()
	}
}

func (d *Discovery) updateTimeout() time.Duration {
	if d.cfg.Fast {
		return time.Second
	}
	return 5 * time.Second
}

func (d *Discovery) resign(change func(*meta)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := *d.local
	change(&next)
	next.seq = max(d.local.seq+1, uint64(time.Now().UnixNano()))
	b, err := next.sign(d.id)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	d.local, d.localMeta = &next, b
	self := memberFrom(next.ticket, &next, nil)
	self.State, self.LastChange, self.Self = StateAlive, d.table[d.self].LastChange, true
	d.table[d.self] = &self
	return nil
}

// Revoke adds a CA-signed revocation: it is persisted, gossiped to every
// member, and the revoked member is evicted from the table at once.
func (d *Discovery) Revoke(r *identity.Revocation) error {
	// The set may be shared and already hold r: evict and save anyway.
	if _, err := d.revs.Add(r); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	d.queueRevocation(r)
	d.evict(r.Node)
	return d.saveRevocations()
}

// Leave announces that this node is leaving (members mark it Left rather
// than Dead). It waits up to timeout for each of its three steps: the
// direct notices, the meta update and memberlist's own leave message.
func (d *Discovery) Leave(timeout time.Duration) error {
	ml, err := d.memberlist()
	if err != nil {
		return err
	}
	if err := d.resign(func(m *meta) { m.leaving = true }); err != nil {
		return err
	}
	d.mu.Lock()
	msg := append([]byte{msgLeaving}, d.localMeta...)
	d.mu.Unlock()
	// Tell every live member directly, then gossip: memberlist's own
	// leave message would otherwise overtake the meta update.
	var wg sync.WaitGroup
	for _, n := range ml.Members() {
		if n.Name == d.self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ml.SendReliable(n, msg); err != nil {
				d.log.Debug("leave: not told directly", "member", n.Name, "err", err)
			}
		}()
	}
	sent := make(chan struct{})
	go func() { wg.Wait(); close(sent) }()
	select {
	case <-sent:
	case <-time.After(timeout):
	}
	if err := ml.UpdateNode(timeout); err != nil {
		d.log.Warn("leave: meta update not acknowledged", "err", err)
	}
	return ml.Leave(timeout)
}

// Shutdown stops gossip and the background loops and persists the table.
// It is safe to call more than once.
func (d *Discovery) Shutdown() error {
	var err error
	d.stopOnce.Do(func() {
		if d.cancel != nil {
			d.cancel()
		}
		d.mu.Lock()
		ml := d.ml
		d.closed = true
		d.mu.Unlock()
		if ml != nil {
			err = ml.Shutdown()
		}
		d.wg.Wait()
		if e := d.saveMembers(); e != nil && err == nil {
			err = e
		}
	})
	return err
}

func (d *Discovery) isBlocked(a netip.Addr) bool {
	if d.cfg.drop != nil && d.cfg.drop(a) {
		return true
	}
	d.blockMu.RLock()
	defer d.blockMu.RUnlock()
	return d.blocked[a]
}

// evict removes a revoked member from the table and blocks its gossip.
func (d *Discovery) evict(node identity.NodePublic) {
	d.mu.Lock()
	var gone []*Member
	for name, m := range d.table {
		if m.Node == node {
			gone = append(gone, m)
			delete(d.table, name)
		}
	}
	d.recountLocked()
	d.mu.Unlock()
	for _, m := range gone {
		if m.Self {
			d.log.Error("this node has been revoked: the mesh no longer admits it", "name", m.Name)
			continue
		}
		// Tell the member before its address is blocked: once every
		// member blocks it, gossip can no longer reach it, and a revoked
		// box that is still running should learn why the mesh went silent
		// and stop (see farewell).
		d.farewell(m.Name, node)
		if t, err := identity.ParseTicket(m.ticket); err == nil {
			d.blockMu.Lock()
			d.blocked[d.cfg.GossipAddr(t).Unmap()] = true
			d.blockMu.Unlock()
		}
		d.log.Warn("member revoked and evicted", "name", m.Name, "node", m.Node.ShortString())
	}
	if d.forgetPhone(node) || len(gone) > 0 {
		d.notify()
	}
}

// farewellCopies is how many datagrams carry the revocation to the
// revoked member: UDP over WireGuard is seldom lost, and every member that
// learns the revocation sends its own copies, so a few suffice.
const farewellCopies = 2

// farewell sends the revocation of node straight to the member called
// name, best effort (UDP, no wait), and is called just before its
// address is blocked. A revoked box then hears of its revocation from the
// admin and from every member that learns it, instead of from nobody: the
// gossip broadcast would never reach it, as every member stops talking to
// it at once.
func (d *Discovery) farewell(name string, node identity.NodePublic) {
	r, ok := d.revs.Get(node)
	if !ok {
		return
	}
	d.mu.Lock()
	ml := d.ml
	d.mu.Unlock()
	if ml == nil {
		return
	}
	msg := append([]byte{msgRevocation}, r.Marshal()...)
	for _, n := range ml.Members() {
		if n.Name != name {
			continue
		}
		for range farewellCopies {
			if err := ml.SendBestEffort(n, msg); err != nil {
				d.log.Debug("revocation not sent to the revoked member", "member", name, "err", err)
			}
		}
	}
}

func (d *Discovery) recountLocked() {
	n := 0
	for _, m := range d.table {
		if m.State == StateAlive {
			n++
		}
	}
	d.alive.Store(int32(max(n, 1)))
}

// setMember records what gossip says about a member. A member whose
// newest meta announces leaving is Left, not Dead, when gossip loses it.
func (d *Discovery) setMember(md *meta, state State) {
	t := md.ticket
	now := time.Now()
	d.mu.Lock()
	old := d.table[t.Name]
	m := memberFrom(t, md, nil)
	m.State, m.LastChange = state, now
	m.Self = t.Name == d.self && t.Node == d.id.Public()
	if old != nil && old.Node == t.Node && old.seq > md.seq {
		// An older meta (e.g. the last one memberlist kept of a node
		// that told us it was leaving): keep the newer contents.
		m = old.clone()
		m.State, m.LastChange = state, now
	}
	if m.State == StateDead && m.leaving {
		m.State = StateLeft
	}
	if old != nil && old.Node == m.Node && old.State == m.State {
		m.LastChange = old.LastChange
	}
	if m.Self {
		d.mu.Unlock()
		return // the self entry is ours, not gossip's
	}
	changed := old == nil || old.State != m.State || old.seq != m.seq || old.Node != m.Node || old.meta == nil
	d.table[t.Name] = &m
	d.recountLocked()
	d.mu.Unlock()
	if changed {
		d.log.Debug("member", "name", m.Name, "state", m.State)
		d.notify()
	}
}

// noteLeaving records a member's signed announcement that it is leaving,
// sent to us directly so that it cannot lose the race with memberlist's
// own dead message.
func (d *Discovery) noteLeaving(md *meta) {
	d.mu.Lock()
	old := d.table[md.ticket.Name]
	if old == nil || old.Node != md.ticket.Node || old.seq >= md.seq || old.Self {
		d.mu.Unlock()
		return
	}
	m := memberFrom(md.ticket, md, nil)
	m.State, m.LastChange = old.State, old.LastChange
	if m.State == StateDead {
		m.State, m.LastChange = StateLeft, time.Now()
	}
	d.table[m.Name] = &m
	d.mu.Unlock()
	d.notify()
}

// Admit adds a member known from a signed join or hello request, before
// gossip has seen it, so that the node peers with it at once, and returns
// its entry. A member gossip already sees alive is left as it is. The
// caller (the enrollment endpoint) has checked the ticket and that the
// identity is not revoked.
func (d *Discovery) Admit(t *identity.Ticket, endpoints []netip.AddrPort) Member {
	d.mu.Lock()
	old := d.table[t.Name]
	if old != nil && old.Node == t.Node && (old.Self || (old.State == StateAlive && old.meta != nil)) {
		m := old.clone()
		d.mu.Unlock()
		return m
	}
	m := memberFrom(t, nil, endpoints)
	m.State, m.LastChange = StateUnknown, time.Now()
	d.table[t.Name] = &m
	d.mu.Unlock()
	d.notify()
	return m.clone()
}

// NameTaken reports whether a member other than node holds name.
func (d *Discovery) NameTaken(name string, node identity.NodePublic) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.table[name]
	return m != nil && m.Node != node
}

// worker applies revocations, persists the table and forgets old members.
func (d *Discovery) worker(ctx context.Context) {
	defer d.wg.Done()
	debounce, sweep := time.Second, time.Minute
	if d.cfg.Fast {
		debounce, sweep = 50*time.Millisecond, time.Second
	}
	tick := time.NewTicker(sweep)
	defer tick.Stop()
	var save <-chan time.Time
	for {
		select {
		case list := <-d.revIn:
			d.mergeRevocations(list)
		case list := <-d.phoneIn:
			d.mergePhones(list)
		case <-d.dirty:
			if save == nil {
				save = time.After(debounce)
			}
		case <-save:
			save = nil
			if err := d.saveMembers(); err != nil {
				d.log.Error("member table not saved", "err", err)
			}
		case <-tick.C:
			d.sweep(time.Now())
		case <-ctx.Done():
			return
		}
	}
}

// mergeRevocations applies revocations learnt from gossip and passes the
// new ones on.
func (d *Discovery) mergeRevocations(list []*identity.Revocation) {
	added, err := d.revs.Merge(list)
	if err != nil && d.refusalLog.Allow() {
		d.log.Warn("gossip: invalid revocation ignored", "err", truncate(err.Error()))
	}
	if len(added) == 0 {
		return
	}
	for _, r := range list {
		if slices.Contains(added, r.Node) {
			d.queueRevocation(r)
			d.evict(r.Node)
		}
	}
	if err := d.saveRevocations(); err != nil {
		d.log.Error("revocations not saved", "err", err)
	}
}

// sweep forgets members dead or unseen for longer than Retention and
// members whose tickets expired, and evicts members revoked through the
// shared revocation set rather than through Revoke or gossip.
func (d *Discovery) sweep(now time.Time) {
	for _, m := range d.Members() {
		if d.revs.IsRevoked(m.Node) {
			d.evict(m.Node)
		}
	}
	d.mu.Lock()
	var gone []string
	for name, m := range d.table {
		if m.Self {
			continue
		}
		expired := false
		if t, err := identity.ParseTicket(m.ticket); err != nil || now.Add(-identity.ClockSkew).After(t.NotAfter) {
			expired = true
		}
		// Known only from an enrollment and never seen by gossip since:
		// the newcomer never came up (or lost the answer and will come
		// back through the endpoint, which admits it again).
		neverSeen := m.meta == nil && m.State != StateAlive && now.Sub(m.LastChange) > d.cfg.NeverSeen
		if expired || neverSeen || (m.State != StateAlive && now.Sub(m.LastChange) > d.cfg.Retention) {
			gone = append(gone, name)
			delete(d.table, name)
		}
	}
	d.recountLocked()
	d.mu.Unlock()
	if d.phones.Prune(now) {
		d.notify() // a phone ticket expired
	}
	if len(gone) > 0 {
		d.log.Info("forgot members", "names", gone)
		d.notify()
	}
}

// Saves are serialised so that the last file written holds the latest
// snapshot.
func (d *Discovery) saveMembers() error {
	if d.cfg.MembersPath == "" {
		return nil
	}
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	return WriteMembers(d.cfg.MembersPath, d.Members())
}

func (d *Discovery) saveRevocations() error {
	if d.cfg.RevocationsPath == "" {
		return nil
	}
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	return d.revs.Save(d.cfg.RevocationsPath)
}

// rejoin keeps joining known members that gossip does not see alive,
// backing off while it fails, so that a restart or a healed partition
// never leaves a permanent split.
func (d *Discovery) rejoin(ctx context.Context) {
	defer d.wg.Done()
	base, ceiling := time.Second, 30*time.Second
	if d.cfg.Fast {
		base, ceiling = 100*time.Millisecond, time.Second
	}
	wait := time.Duration(0)
	firstRound := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		targets := d.rejoinTargets()
		if len(targets) == 0 {
			wait = base
			continue
		}
		ml, err := d.memberlist()
		if err != nil {
			return
		}
		// A full state exchange with one live member is enough to be
		// back; asking every member gossip lost at once turns a wave of
		// false deaths in a large mesh into hundreds of full exchanges
		// per member. A random few each round, the rest in later rounds.
		// Not the first round: that is how a node joins at start, and a
		// newcomer must reach the member that admitted it (the only one
		// that knows it yet) at once, not in a later round.
		if !firstRound && len(targets) > defaults.GossipRejoinFanout {
			rand.Shuffle(len(targets), func(i, j int) { targets[i], targets[j] = targets[j], targets[i] })
			targets = targets[:defaults.GossipRejoinFanout]
		}
		var wg sync.WaitGroup
		var joined atomic.Int32
		for _, t := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if n, _ := ml.Join([]string{t}); n > 0 {
					joined.Add(1)
				}
			}()
		}
		wg.Wait()
		firstRound = false
		d.log.Debug("rejoin", "targets", len(targets), "answered", joined.Load())
		wait = min(max(2*wait, base), ceiling)
		wait += time.Duration(rand.Int64N(int64(wait / 4)))
	}
}

// rejoinTargets are the known members gossip does not see alive, except
// those that left on purpose.
func (d *Discovery) rejoinTargets() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, m := range d.table {
		// A member seen leaving during this run is not chased. One the
		// persisted table says had left is: when a whole mesh stops at
		// once, two members can each record the other as left, and if
		// neither then rejoined the other they would stay split for good.
		if m.Self || m.State == StateAlive || (m.State == StateLeft && m.LastChange.After(d.created)) {
			continue
		}
		if a, ok := d.joinAddr(m); ok {
			out = append(out, a)
		}
	}
	return out
}

// logWriter turns memberlist's log lines into slog records.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for _, l := range []struct {
		tag   string
		level slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}} {
		if rest, ok := strings.CutPrefix(s, l.tag); ok {
			s, level = strings.TrimSpace(rest), l.level
			break
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	// Refused nodes are logged once by rejected; memberlist would log
	// every refused message.
	if strings.Contains(s, "ignoring alive message") || strings.Contains(s, "Failed push/pull merge") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, "memberlist: "+s)
	return len(p), nil
}
