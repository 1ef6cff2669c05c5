package natsnode

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ErrNotRunning is returned while the server is not running: not started
// yet, restarting into its final mode (see doc.go), or shut down.
var ErrNotRunning = errors.New("natsnode: server not running")

// Server is the node's embedded nats-server.
type Server struct {
	cfg Config
	log *slog.Logger

	localPass, systemPass string
	clientAuth            *clientAuth
	routeAuth             *routeAuth
	routeRefused          atomic.Int64
	leafRefused           atomic.Int64

	// reloadMu serializes ReloadOptions calls (route changes and
	// Recheck's re-authorization) with the bookkeeping around them.
	reloadMu sync.Mutex

	mu        sync.Mutex
	ns        *server.Server // the running server, under mu; read via srv()
	mode      mode           // how ns runs (see bootstrap.go)
	restarts  int            // mode changes since Start: at most one
	sl        *serverLogger  // the running server's logger
	members   []Member
	self      Member
	applied   []string // route URLs last applied
	startErr  string   // last failed start
	reloadErr string   // last failed reload
	adoptErr  string   // last stream that could not be adopted
	dirty     bool     // a reload (or a start) is owed
	lastTry   time.Time
	started   bool
	jsPeer    bool      // a routed member runs clustered JetStream (core mode asks)
	lastProbe time.Time // of jetStreamPeer; loop goroutine only
	looping   bool
	stopped   bool
	ready     chan struct{}
	readyOnce sync.Once
	kick      chan struct{}
	stop      chan struct{}
	loopDone  chan struct{}
	shutdown  sync.Once
	ctx       context.Context // canceled by Shutdown
	cancel    context.CancelFunc
}

// New validates cfg (the boot guard) and prepares a server; nothing
// listens until Start.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "nats", "server", cfg.ServerName),
		localPass:  randomPassword(),
		systemPass: randomPassword(),
		ready:      make(chan struct{}),
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		loopDone:   make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.clientAuth = &clientAuth{s: s, conns: map[uint64]authConn{}, internal: map[uint64]bool{}}
	s.routeAuth = &routeAuth{s: s, accepted: map[uint64]acceptedRoute{}}
	s.self = s.selfMember()
	return s, nil
}

// selfMember is this server as a route target: the advertised address, or
// the listen host (loopback when it binds everything).
func (s *Server) selfMember() Member {
	cl := s.cfg.Cluster
	m := Member{ServerName: s.cfg.ServerName, RoutePort: cl.Port}
	if ap, err := netip.ParseAddrPort(cl.Advertise); err == nil {
		m.Addr, m.RoutePort = ap.Addr(), int(ap.Port())
		return m
	}
	if a, err := netip.ParseAddr(cl.Host); err == nil && !a.IsUnspecified() {
		m.Addr = a
		return m
	}
	m.Addr = netip.MustParseAddr("127.0.0.1")
	return m
}

// withSelf returns members plus self, so self is always a route.
func (s *Server) withSelf(members []Member) []Member {
	return append(slices.Clone(members), s.self)
}

// options builds a fresh option set for mode m; the start and every
// reload use it so unchanged fields compare equal.
func (s *Server) options(m mode, routes, leaves []*url.URL) *server.Options {
	c := &s.cfg
	o := &server.Options{
		ServerName:                 c.ServerName,
		Host:                       c.Host,
		Port:                       c.ClientPort,
		NoSigs:                     true,
		AlwaysEnableNonce:          true,
		CustomClientAuthentication: s.clientAuth,
		StoreDir:                   c.StoreDir,
	}
	if c.JetStream.Enabled && m != modeCore {
		o.JetStream = true
		o.JetStreamMaxMemory = c.JetStream.MaxMemory
		o.JetStreamMaxStore = c.JetStream.MaxStore
		// Named, so a leaf server's clients reach it under
		// $JS.<domain>.API and the plain JetStream API never crosses a
		// leaf connection (see leafOptions).
		o.JetStreamDomain = JetStreamDomain
	}
	if c.ClientTLS != nil {
		o.TLS = true
		o.TLSConfig = c.ClientTLS
	}
	s.leafOptions(o, leaves)
	if c.clustered() && m != modeAlone {
		o.CustomRouterAuthentication = s.routeAuth
		o.Cluster = server.ClusterOpts{
			Name:      c.Cluster.Name,
			Host:      c.Cluster.Host,
			Port:      c.Cluster.Port,
			Advertise: c.Cluster.Advertise,
			TLSConfig: c.Cluster.RouteTLS,
		}
		if c.Cluster.RouteSecret != "" {
			// Used for implicit routes and to advertise auth_required; the
			// check itself is routeAuth's.
			o.Cluster.Username = RouteUser
			o.Cluster.Password = c.Cluster.RouteSecret
		}
		o.Routes = routes
		if o.JetStream {
			// The tag that pins an adopted stream to this server.
			o.Tags = []string{serverTag(c.ServerName)}
		}
	}
	return o
}

// hasJetStreamState reports whether the store already holds JetStream
// meta-group state (then the peer set is on disk and no bootstrap happens).
func hasJetStreamState(storeDir string) bool {
	p := filepath.Join(storeDir, server.JetStreamStoreDir, server.DEFAULT_SYSTEM_ACCOUNT, "_js_", "_meta_", "peers.idx")
	_, err := os.Stat(p)
	return err == nil
}

// Start starts the server and blocks until it accepts connections, ctx
// ends, StartTimeout passes, or the server reports a fatal error. Core
// NATS always starts at once. With an empty JetStream store the server
// may start without JetStream (fewer than BootstrapExpect members known)
// or without a cluster (no member but itself) and is restarted once into
// its configured form later; Status says which (see doc.go).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("natsnode: already started")
	}
	s.started = true
	all := s.withSelf(s.members)
	s.mu.Unlock()

	m := s.nextMode(modeFull, false, all, false)
	if m == modeCore {
		s.log.Info("core NATS starts now; JetStream waits for bootstrap_expect members",
			"known", len(distinctAddrs(all)), "expect", s.cfg.JetStream.BootstrapExpect)
	}
	if m == modeAlone {
		s.log.Info("no other member known: JetStream runs without a cluster until one joins")
	}
	if err := s.startServer(ctx, all, m); err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("natsnode: shut down during start")
	}
	s.looping = true
	go s.loop()
	return nil
}

// startServer creates and starts the nats-server in mode m with all as
// routes. A Fatalf from the server ends the wait with its message.
func (s *Server) startServer(ctx context.Context, all []Member, m mode) error {
	if m == modeFull && s.cfg.JetStream.Enabled && s.cfg.clustered() {
		n, err := setAsideStandaloneStreams(s.cfg.StoreDir)
		if err != nil {
			return s.startFailed(fmt.Errorf("natsnode: server %s: setting standalone streams aside: %w", s.cfg.ServerName, err))
		}
		if n > 0 {
			s.log.Info("streams of the standalone run set aside for adoption into the meta group", "streams", n)
		}
	}
	routes := routeURLs(all, s.cfg.Cluster.RouteSecret)
	leaves := leafURLs(all)
	ns, err := server.NewServer(s.options(m, routes, leaves))
	if err != nil {
		return s.startFailed(fmt.Errorf("natsnode: server %s: %w", s.cfg.ServerName, err))
	}
	sl := newServerLogger(s.log, s.cfg.Cluster.RouteSecret)
	ns.SetLoggerV2(sl, s.log.Enabled(ctx, slog.LevelDebug), false, false)
	go ns.Start()

	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	fail := func(err error) error {
		ns.Shutdown()
		ns.WaitForShutdown()
		return s.startFailed(err)
	}
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		if m := sl.fatalMsg(); m != "" {
			return fail(fmt.Errorf("natsnode: server %s failed to start: %s", s.cfg.ServerName, m))
		}
		if ctx.Err() != nil {
			return fail(fmt.Errorf("natsnode: server %s not ready: %w", s.cfg.ServerName, ctx.Err()))
		}
	}
	if m := sl.fatalMsg(); m != "" {
		return fail(fmt.Errorf("natsnode: server %s failed to start: %s", s.cfg.ServerName, m))
	}
	wantJS := s.cfg.JetStream.Enabled && m != modeCore
	if wantJS && !ns.JetStreamEnabled() {
		return fail(fmt.Errorf("natsnode: server %s: JetStream did not start", s.cfg.ServerName))
	}
	if wantJS {
		if err := s.limitAccount(ns); err != nil {
			return fail(fmt.Errorf("natsnode: server %s: JetStream account limits: %w", s.cfg.ServerName, err))
		}
	}

	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		ns.Shutdown() // never under mu: client auth callbacks take it
		return errors.New("natsnode: shut down during start")
	}
	s.ns = ns
	s.mode = m
	s.sl = sl
	s.applied = appliedURLs(routes, leaves)
	s.startErr = ""
	s.dirty = true // members may have changed meanwhile; reconcile once
	s.mu.Unlock()
	s.readyOnce.Do(func() { close(s.ready) })
	s.poke()
	s.log.Info("nats server ready", "client_url", ns.ClientURL(), "mode", m.String(), "routes", len(routes), "jetstream", ns.JetStreamEnabled())
	return nil
}

// restart replaces the running server with one in mode m: the one
// transition a fresh store makes (see doc.go). Clients are disconnected
// and reconnect; connections made by ConnectInProcess reconnect too.
func (s *Server) restart(all []Member, m mode) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	old, from := s.ns, s.mode
	s.ns, s.sl = nil, nil
	s.restarts++
	s.mu.Unlock()
	s.log.Info("restarting nats server into its final mode", "from", from.String(), "to", m.String(), "members", len(distinctAddrs(all)))
	if old != nil {
		old.Shutdown()
		old.WaitForShutdown()
	}
	// Trap: nats-server numbers connections from 1 again, so what the
	// old server's connections proved must not be found under the new
	// server's ids (a new connection would skip authentication).
	// TestTrapRestartForgetsConnectionIDs pins it.
	s.clientAuth.reset()
	s.routeAuth.reset()
	return s.startServer(s.ctx, all, m)
}

func (s *Server) startFailed(err error) error {
	s.mu.Lock()
	s.startErr = err.Error()
	s.mu.Unlock()
	return err
}

// accountLimits are the JetStream limits of the shared account. Storage is
// bounded by the server's MaxMemory/MaxStore (and by each stream's own
// limits, which only admins set).
func (s *Server) accountLimits() map[string]server.JetStreamAccountLimits {
	js := s.cfg.JetStream
	return map[string]server.JetStreamAccountLimits{"": {
		MaxMemory: -1, MaxStore: -1,
		MaxStreams: js.MaxStreams, MaxConsumers: js.MaxConsumers,
		MaxAckPending: -1, MemoryMaxStreamBytes: -1, StoreMaxStreamBytes: -1,
	}}
}

// limitAccount gives the global account its JetStream limits. Go-built
// options cannot (an account's limits are unexported, set by the config
// parser), and nats-server enables the global account unlimited.
//
// Trap: an account keeps two copies of its limits. UpdateJetStreamLimits
// changes only the live one, and every reload puts the other back
// (enableJetStreamAccounts → configJetStream → UpdateJetStreamLimits with
// the account's configured copy), which would lift the limits on the first
// route change; EnableJetStream on an enabled account sets only the
// configured copy. So both, in this order; TestJetStreamAccountLimits
// checks the limits after a reload.
//
// Only admins and in-process clients may create assets, and between
// ReadyForConnections and this call the window is theirs alone.
func (s *Server) limitAccount(ns *server.Server) error {
	acc, limits := ns.GlobalAccount(), s.accountLimits()
	if !acc.JetStreamEnabled() {
		// EnableJetStream would then start the account from scratch.
		return errors.New("JetStream not enabled for the global account")
	}
	if err := acc.EnableJetStream(limits, nil); err != nil {
		return err
	}
	return acc.UpdateJetStreamLimits(limits)
}

// Ready is closed once the server first accepts connections (core NATS).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// SetMembers hands over the current member set. It returns at once; the
// route set is reloaded after ReloadDebounce without further changes.
func (s *Server) SetMembers(members []Member) {
	s.mu.Lock()
	s.members = slices.Clone(members)
	s.dirty = true
	s.mu.Unlock()
	s.poke()
}

func (s *Server) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// loop applies member changes (debounced) and runs the safety-net recheck.
func (s *Server) loop() {
	defer close(s.loopDone)
	tick := time.NewTicker(s.cfg.RecheckInterval)
	defer tick.Stop()
	// Bootstrap work (a core-mode server asking whether a peer runs
	// JetStream, a restarted one adopting standalone streams) retries
	// on its own, faster tick.
	boot := time.NewTicker(bootstrapTick)
	defer boot.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-boot.C:
			s.bootstrapStep()
		case <-tick.C:
			s.Recheck()
			s.mu.Lock()
			retry := s.dirty
			s.mu.Unlock()
			if retry {
				s.apply()
			}
		case <-s.kick:
			t := time.NewTimer(s.cfg.ReloadDebounce)
			select {
			case <-s.stop:
				t.Stop()
				return
			case <-t.C:
			}
			s.apply()
		}
	}
}

// startRetry spaces out start attempts that keep failing.
const startRetry = 5 * time.Second

// bootstrapTick is how often a server not yet in its final mode looks for
// a JetStream peer, and a restarted one retries adopting streams.
const bootstrapTick = time.Second

// bootstrapStep asks, in core mode, whether a routed member runs
// JetStream (then it is time to restart with JetStream), and in full mode
// adopts streams set aside by a standalone run.
func (s *Server) bootstrapStep() {
	s.mu.Lock()
	ns, m, stopped := s.ns, s.mode, s.stopped
	s.mu.Unlock()
	if ns == nil || stopped {
		return
	}
	switch {
	case m == modeCore && ns.NumRoutes() > 0 && time.Since(s.lastProbe) >= jsPeerProbeEvery:
		s.lastProbe = time.Now()
		if s.jetStreamPeer() {
			s.mu.Lock()
			s.jsPeer = true
			s.dirty = true
			s.mu.Unlock()
			s.apply()
		}
	case m == modeFull && ns.JetStreamEnabled():
		s.adoptStreams(ns)
	}
}

// apply restarts the server into its final mode when it is time, retries
// a failed start, and otherwise reloads the route set when it differs
// from what is running.
func (s *Server) apply() {
	s.mu.Lock()
	if !s.dirty || s.stopped {
		s.mu.Unlock()
		return
	}
	s.dirty = false
	ns, cur := s.ns, s.mode
	all := s.withSelf(s.members)
	next := s.nextMode(cur, ns != nil, all, s.jsPeer)
	routes, leafs := routeURLs(all, s.cfg.Cluster.RouteSecret), leafURLs(all)
	want := appliedURLs(routes, leafs)
	same := slices.Equal(want, s.applied)
	s.mu.Unlock()

	if ns == nil || next != cur {
		s.mu.Lock()
		wait := time.Until(s.lastTry.Add(startRetry))
		if ns == nil && wait > 0 {
			s.dirty = true // retried on a later tick
			s.mu.Unlock()
			return
		}
		s.lastTry = time.Now()
		s.mu.Unlock()
		var err error
		if ns == nil {
			err = s.startServer(s.ctx, all, next)
		} else {
			err = s.restart(all, next)
		}
		if err != nil {
			s.log.Error("nats server start failed", "mode", next.String(), "err", err)
			s.mu.Lock()
			s.dirty = true
			s.mu.Unlock()
		}
		return
	}
	if same || cur == modeAlone {
		return
	}
	if s.reload() == nil {
		if s.cfg.leafNode() {
			s.log.Info("nats leaf remote reloaded", "core", len(leafs))
		} else {
			s.log.Info("nats routes reloaded", "routes", len(routes))
		}
	}
}

// reload applies the current member set with ReloadOptions. Every
// ReloadOptions re-runs authorization: nats-server always counts the
// "users" and "accounts" options as changed (reload.go diffOptions), so
// reloadAuthorization asks clientAuth about every client and routeAuth
// about every accepted route, and closes those refused. Recheck relies on
// that to close routes; there is no other way to close a route.
func (s *Server) reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	ns, m := s.ns, s.mode
	all := s.withSelf(s.members)
	routes, leaves := routeURLs(all, s.cfg.Cluster.RouteSecret), leafURLs(all)
	s.mu.Unlock()
	if ns == nil {
		return ErrNotRunning
	}
	s.clientAuth.gate.Lock()
	err := ns.ReloadOptions(s.options(m, routes, leaves))
	s.clientAuth.gate.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.reloadErr = err.Error()
		s.dirty = true // retried on the next tick
		s.log.Error("nats reload failed", "err", err)
		return err
	}
	s.reloadErr = ""
	s.applied = appliedURLs(routes, leaves)
	return nil
}

func (s *Server) srv() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ns
}

// Recheck closes open client connections whose identity Authorize now
// refuses (or whose Role changed), and accepted routes AllowRoute now
// refuses. It returns how many client connections it closed. The caller
// calls it on every membership change.
//
// Routes: nats-server has no call that closes one route, but every reload
// re-asks route authentication for every accepted route (see reload), so
// when an accepted route is now refused Recheck reloads. Routes this
// server dialled are not re-checked by nats-server (it has no credentials
// of the remote to check); they close when their URL leaves the route set
// (the routes option of a reload closes a removed URL's connection) or
// when the remote's own recheck drops its side.
func (s *Server) Recheck() int {
	ns := s.srv()
	if ns == nil {
		return 0
	}
	closed := s.clientAuth.recheck(ns)
	if s.cfg.clustered() {
		s.recheckRoutes(ns)
	}
	return closed
}

func (s *Server) recheckRoutes(ns *server.Server) {
	rz, err := ns.Routez(nil)
	if err != nil {
		return
	}
	live := make(map[uint64]bool, len(rz.Routes))
	for _, r := range rz.Routes {
		live[r.Rid] = r.DidSolicit
	}
	if n := s.routeAuth.stale(live); n > 0 {
		s.log.Info("closing routes no longer allowed", "routes", n)
		_ = s.reload() // logged by reload
	}
}

// ClientURL is the client listener URL.
func (s *Server) ClientURL() string {
	ns := s.srv()
	if ns == nil {
		return ""
	}
	return ns.ClientURL()
}

// ConnectInProcess connects a local service without a socket. It is
// authenticated as the node itself, in the global account.
func (s *Server) ConnectInProcess(opts ...nats.Option) (*nats.Conn, error) {
	return s.connectInternal(localUser, s.localPass, opts)
}

// inProcess hands nats.go a pipe to whichever server runs now, so an
// in-process connection survives the restart into the final mode: nats.go
// asks for a new pipe when it reconnects.
type inProcess struct{ s *Server }

func (p inProcess) InProcessConn() (net.Conn, error) {
	ns := p.s.srv()
	if ns == nil {
		return nil, ErrNotRunning
	}
	return ns.InProcessConn()
}

func (s *Server) connectInternal(user, pass string, opts []nats.Option) (*nats.Conn, error) {
	if s.srv() == nil {
		return nil, ErrNotRunning
	}
	all := append([]nats.Option{
		nats.InProcessServer(inProcess{s}),
		nats.UserInfo(user, pass),
		nats.Name(user),
	}, opts...)
	var nc *nats.Conn
	var err error
	// A connection that races a route reload is refused (see clientAuth);
	// try again.
	for try := 0; try < 3; try++ {
		if nc, err = nats.Connect("", all...); !errors.Is(err, nats.ErrAuthorization) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("natsnode: in-process connection: %w", err)
	}
	return nc, nil
}

// RemovePeer takes serverName out of the JetStream meta group
// ($JS.API.SERVER.REMOVE from the system account), so a revoked or retired
// node no longer counts toward quorum.
func (s *Server) RemovePeer(serverName string) error {
	if serverName == "" {
		return errors.New("natsnode: remove peer: empty server name")
	}
	nc, err := s.connectInternal(systemUser, s.systemPass, nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	req, _ := json.Marshal(server.JSApiMetaServerRemoveRequest{Server: serverName})
	msg, err := nc.Request(server.JSApiRemoveServer, req, 5*time.Second)
	if err != nil {
		return fmt.Errorf("natsnode: remove peer %q: %w", serverName, err)
	}
	var resp server.JSApiMetaServerRemoveResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("natsnode: remove peer %q: bad response: %w", serverName, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("natsnode: remove peer %q: %s", serverName, resp.Error.Description)
	}
	if !resp.Success {
		return fmt.Errorf("natsnode: remove peer %q: not confirmed", serverName)
	}
	s.log.Info("removed JetStream peer", "peer", serverName)
	return nil
}

// MetaGroup reports the JetStream meta group as this server sees it: the
// leader's server name and every peer's (leader included, offline peers
// too). It fails while JetStream is not running or no leader is known.
func (s *Server) MetaGroup() (leader string, peers []string, err error) {
	ns := s.srv()
	if ns == nil {
		return "", nil, ErrNotRunning
	}
	jsz, err := ns.Jsz(nil)
	if err != nil {
		return "", nil, fmt.Errorf("natsnode: meta group: %w", err)
	}
	if jsz.Meta == nil || jsz.Meta.Leader == "" {
		return "", nil, errors.New("natsnode: meta group: no leader known")
	}
	peers = append(peers, jsz.Meta.Leader)
	for _, p := range jsz.Meta.Replicas {
		peers = append(peers, p.Name)
	}
	return jsz.Meta.Leader, peers, nil
}

// Status is what `meshnode status` shows about NATS.
type Status struct {
	ServerName     string
	Running        bool
	StartError     string // last failed start, if not running
	ServerError    string // a fatal error the running server reported
	ClientURL      string
	RoutesUp       int   // distinct remote servers with a route
	RoutesExpected int   // members other than self
	RoutesRefused  int64 // inbound routes refused since start
	// Routes are the open route connections, by connection id: a route
	// dropped and reconnected comes back under a new id.
	Routes      []RouteConn
	Clients     int
	JetStream   JetStreamStatus
	ReloadError string

	// RouteNames names the servers a route is up to, sorted.
	RouteNames []string

	// Leaf is true on a leaf server (LeafConfig.Solicit): no routes, one
	// leaf connection to a core server. LeafExpected is how many core
	// servers its remote lists.
	Leaf         bool
	LeafExpected int
	// Leafs are the open leaf connections: on a leaf server the one to
	// its core server, on a core server those of its leaf members.
	Leafs       []LeafConn
	LeafRefused int64 // inbound leaf connections refused since start
}

// RouteConn is one open route connection.
type RouteConn struct {
	ID     uint64    // nats-server's connection id
	Remote string    // the remote server's name
	Start  time.Time // when the connection was made
}

// JetStreamStatus reports the bootstrap guard and the meta group.
type JetStreamStatus struct {
	Configured bool
	Enabled    bool
	// Waiting is true while a fresh store waits for BootstrapExpect
	// members (Known so far, self included) before JetStream starts;
	// core NATS runs meanwhile.
	Waiting bool
	// Standalone is true while JetStream runs without a cluster because
	// no other member is known (R1 streams only); they are adopted into
	// the meta group when the mesh grows.
	Standalone bool
	Known      int
	Expect     int
	// Adopting counts streams of a standalone run not yet adopted into
	// the meta group; AdoptError is the last reason one was not.
	Adopting    int
	AdoptError  string
	MetaLeader  string
	ClusterSize int
}

// Routes returns how many member servers are routed and how many are
// expected.
func (s *Server) Routes() (up, expected int) {
	st := s.Status()
	return st.RoutesUp, st.RoutesExpected
}

// Status snapshots the server.
func (s *Server) Status() Status {
	s.mu.Lock()
	all := s.withSelf(s.members)
	ns := s.ns
	st := Status{
		ServerName:    s.cfg.ServerName,
		Running:       ns != nil && !s.stopped,
		StartError:    s.startErr,
		RoutesRefused: s.routeRefused.Load(),
		ReloadError:   s.reloadErr,
		JetStream: JetStreamStatus{
			Configured: s.cfg.JetStream.Enabled,
			Known:      len(distinctAddrs(all)),
			Expect:     s.cfg.JetStream.BootstrapExpect,
		},
	}
	running := ns != nil && !s.stopped
	st.JetStream.Waiting = running && s.mode == modeCore
	st.JetStream.Standalone = running && s.mode == modeAlone
	st.JetStream.AdoptError = s.adoptErr
	if s.sl != nil {
		st.ServerError = s.sl.fatalMsg()
	}
	self := s.self.addrPort()
	for _, ap := range distinctAddrs(all) {
		if ap != self && s.cfg.clustered() {
			st.RoutesExpected++
		}
	}
	st.Leaf = s.cfg.leafNode()
	st.LeafRefused = s.leafRefused.Load()
	if st.Leaf {
		st.LeafExpected = len(leafURLs(all))
	}
	s.mu.Unlock()
	if s.cfg.JetStream.Enabled {
		st.JetStream.Adopting = len(pendingAdoption(s.cfg.StoreDir))
	}
	if ns == nil {
		return st
	}
	st.JetStream.Enabled = ns.JetStreamEnabled()
	st.ClientURL = ns.ClientURL()
	st.Clients = ns.NumClients()
	st.Leafs = leafConns(ns)
	if rz, err := ns.Routez(nil); err == nil {
		ids := map[string]bool{}
		for _, r := range rz.Routes {
			ids[r.RemoteID] = true
			st.Routes = append(st.Routes, RouteConn{ID: r.Rid, Remote: r.RemoteName, Start: r.Start})
			if r.RemoteName != "" && !slices.Contains(st.RouteNames, r.RemoteName) {
				st.RouteNames = append(st.RouteNames, r.RemoteName)
			}
		}
		st.RoutesUp = len(ids)
		slices.SortFunc(st.Routes, func(a, b RouteConn) int { return cmp.Compare(a.ID, b.ID) })
		slices.Sort(st.RouteNames)
	}
	if st.JetStream.Enabled {
		if jsz, err := ns.Jsz(nil); err == nil && jsz.Meta != nil {
			st.JetStream.MetaLeader = jsz.Meta.Leader
			st.JetStream.ClusterSize = jsz.Meta.Size
		}
	}
	return st
}

// Shutdown stops the server and its background work. Safe to call twice
// and before Start.
func (s *Server) Shutdown() {
	s.shutdown.Do(func() {
		s.mu.Lock()
		ns, loop := s.ns, s.looping
		s.stopped = true
		s.mu.Unlock()
		s.cancel()
		close(s.stop)
		if loop {
			<-s.loopDone
		}
		if ns != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
		}
	})
}
