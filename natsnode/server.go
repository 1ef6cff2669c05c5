package natsnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

	"github.com/meshnode/meshnode/identity"
)

// Server is the node's embedded nats-server.
type Server struct {
	cfg Config
	log *slog.Logger
	sl  *serverLogger

	localPass, systemPass string
	clientAuth            *clientAuth
	routeAuth             *routeAuth
	routeRefused          atomic.Int64

	ns *server.Server // set once by Start, under mu; read via srv()

	mu         sync.Mutex
	members    []Member
	self       Member
	applied    []string // route URLs last applied
	jsOn       bool     // JetStream running
	jsErr      string   // last JetStream start failure
	reloadErr  string   // last reload failure
	dirty      bool     // a reload is owed (failed or pending)
	started    bool
	looping    bool
	stopped    bool
	kick       chan struct{}
	stop       chan struct{}
	loopDone   chan struct{}
	shutdownMu sync.Once
}

// New validates cfg (the boot guard) and prepares a server; nothing
// listens until Start.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("server", cfg.ServerName),
		localPass:  randomPassword(),
		systemPass: randomPassword(),
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		loopDone:   make(chan struct{}),
	}
	s.sl = newServerLogger(s.log, cfg.Cluster.RouteSecret)
	s.clientAuth = &clientAuth{s: s, conns: map[uint64]identity.NodePublic{}}
	s.routeAuth = &routeAuth{s: s}
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

// options builds a fresh option set; Start and every reload use it so
// unchanged fields compare equal.
func (s *Server) options(routes []*url.URL, jetstream bool) *server.Options {
	c := &s.cfg
	o := &server.Options{
		ServerName:                 c.ServerName,
		Host:                       c.Host,
		Port:                       c.ClientPort,
		NoSigs:                     true,
		AlwaysEnableNonce:          true,
		CustomClientAuthentication: s.clientAuth,
		StoreDir:                   c.StoreDir,
		JetStream:                  jetstream,
		JetStreamMaxMemory:         c.JetStream.MaxMemory,
		JetStreamMaxStore:          c.JetStream.MaxStore,
	}
	if c.ClientTLS != nil {
		o.TLS = true
		o.TLSConfig = c.ClientTLS
	}
	if !c.JetStream.Enabled {
		o.JetStreamMaxMemory, o.JetStreamMaxStore = 0, 0
	}
	if c.clustered() {
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
	}
	return o
}

// wantJetStream applies the bootstrap guard to a member set (self
// included).
func (s *Server) wantJetStream(all []Member) bool {
	js := s.cfg.JetStream
	if !js.Enabled {
		return false
	}
	if s.jsOn || !s.cfg.clustered() || hasJetStreamState(s.cfg.StoreDir) {
		return true
	}
	return len(distinctAddrs(all)) >= js.BootstrapExpect
}

// hasJetStreamState reports whether the store already holds JetStream
// meta-group state (then the peer set is on disk and no bootstrap happens).
func hasJetStreamState(storeDir string) bool {
	p := filepath.Join(storeDir, server.JetStreamStoreDir, server.DEFAULT_SYSTEM_ACCOUNT, "_js_", "_meta_", "peers.idx")
	_, err := os.Stat(p)
	return err == nil
}

// Start starts the server and blocks until it accepts connections, ctx
// ends, StartTimeout passes, or the server reports a fatal error.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("natsnode: already started")
	}
	s.started = true
	all := s.withSelf(s.members)
	routes := routeURLs(all, s.cfg.Cluster.RouteSecret)
	js := s.wantJetStream(all)
	s.mu.Unlock()

	ns, err := server.NewServer(s.options(routes, js))
	if err != nil {
		return fmt.Errorf("natsnode: %w", err)
	}
	ns.SetLoggerV2(s.sl, s.log.Enabled(ctx, slog.LevelDebug), false, false)
	s.mu.Lock()
	s.ns = ns
	s.mu.Unlock()
	go ns.Start()

	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		if m := s.sl.fatalMsg(); m != "" {
			ns.Shutdown()
			return fmt.Errorf("natsnode: server %s failed to start: %s", s.cfg.ServerName, m)
		}
		if ctx.Err() != nil {
			ns.Shutdown()
			return fmt.Errorf("natsnode: server %s not ready: %w", s.cfg.ServerName, ctx.Err())
		}
	}
	if js && !ns.JetStreamEnabled() {
		ns.Shutdown()
		return fmt.Errorf("natsnode: server %s: JetStream did not start", s.cfg.ServerName)
	}

	s.mu.Lock()
	s.applied = urlStrings(routes)
	s.jsOn = js
	s.dirty = true // members may have changed meanwhile; reconcile once
	if s.stopped {
		s.mu.Unlock()
		ns.Shutdown()
		return errors.New("natsnode: shut down during start")
	}
	s.looping = true
	s.mu.Unlock()
	go s.loop()
	s.poke()
	s.log.Info("nats server ready", "client_url", ns.ClientURL(), "routes", len(routes), "jetstream", js)
	return nil
}

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
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.clientAuth.recheck(s.ns)
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

// apply reloads routes (and turns JetStream on once the bootstrap guard
// allows) when they differ from what is running.
func (s *Server) apply() {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return
	}
	s.dirty = false
	all := s.withSelf(s.members)
	routes := routeURLs(all, s.cfg.Cluster.RouteSecret)
	want := urlStrings(routes)
	js := s.wantJetStream(all)
	same := slices.Equal(want, s.applied) && js == s.jsOn
	s.mu.Unlock()
	if same {
		return
	}

	err := s.ns.ReloadOptions(s.options(routes, js))
	jsRunning := s.ns.JetStreamEnabled()

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.reloadErr = err.Error()
		s.dirty = true // retried on the next tick
		s.log.Error("nats route reload failed", "err", err)
		return
	}
	s.reloadErr = ""
	s.applied = want
	if js && !s.jsOn {
		if jsRunning {
			s.jsOn = true
			s.jsErr = ""
			s.log.Info("JetStream started", "members", len(distinctAddrs(all)))
		} else {
			s.jsErr = s.sl.takeJetStreamError()
			if s.jsErr == "" {
				s.jsErr = "JetStream did not start"
			}
			s.dirty = true
			s.log.Error("JetStream start failed", "err", s.jsErr)
		}
	}
	s.log.Info("nats routes reloaded", "routes", len(want))
}

func (s *Server) srv() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ns
}

// Recheck closes open client connections whose identity Authorize now
// refuses. The caller calls it on every membership change.
func (s *Server) Recheck() int {
	ns := s.srv()
	if ns == nil {
		return 0
	}
	return s.clientAuth.recheck(ns)
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

func (s *Server) connectInternal(user, pass string, opts []nats.Option) (*nats.Conn, error) {
	ns := s.srv()
	if ns == nil {
		return nil, errors.New("natsnode: server not started")
	}
	all := append([]nats.Option{
		nats.InProcessServer(ns),
		nats.UserInfo(user, pass),
		nats.Name(user),
	}, opts...)
	nc, err := nats.Connect("", all...)
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

// Status is what `meshnode status` shows about NATS.
type Status struct {
	ServerName     string
	ClientURL      string
	RoutesUp       int   // distinct remote servers with a route
	RoutesExpected int   // members other than self
	RoutesRefused  int64 // inbound routes refused since start
	Clients        int
	JetStream      JetStreamStatus
	ReloadError    string
}

// JetStreamStatus reports the bootstrap guard and the meta group.
type JetStreamStatus struct {
	Configured bool
	Enabled    bool
	// Waiting is true while an empty store waits for BootstrapExpect
	// members (Known so far).
	Waiting     bool
	Known       int
	Expect      int
	MetaLeader  string
	ClusterSize int
	Error       string
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
	st := Status{
		ServerName:    s.cfg.ServerName,
		RoutesRefused: s.routeRefused.Load(),
		ReloadError:   s.reloadErr,
		JetStream: JetStreamStatus{
			Configured: s.cfg.JetStream.Enabled,
			Enabled:    s.jsOn,
			Known:      len(distinctAddrs(all)),
			Expect:     s.cfg.JetStream.BootstrapExpect,
			Error:      s.jsErr,
		},
	}
	st.JetStream.Waiting = st.JetStream.Configured && !s.jsOn
	self := s.self.addrPort()
	for _, ap := range distinctAddrs(all) {
		if ap != self {
			st.RoutesExpected++
		}
	}
	ns := s.ns
	s.mu.Unlock()
	if ns == nil {
		return st
	}
	st.ClientURL = ns.ClientURL()
	st.Clients = ns.NumClients()
	if rz, err := ns.Routez(nil); err == nil {
		ids := map[string]bool{}
		for _, r := range rz.Routes {
			ids[r.RemoteID] = true
		}
		st.RoutesUp = len(ids)
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
	s.shutdownMu.Do(func() {
		s.mu.Lock()
		ns, loop := s.ns, s.looping
		s.stopped = true
		s.mu.Unlock()
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
