package natsnode

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/meshnode/meshnode/identity"
)

// Internal user names; they authenticate only on in-process connections.
const (
	localUser  = "meshnode-local"
	systemUser = "meshnode-system"
)

// secretEqual compares two secrets in constant time (hashing first so the
// length does not leak either).
func secretEqual(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

func randomPassword() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("natsnode: random: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// clientAuth is the CustomClientAuthentication: nkey signature over the
// nonce, then membership, on every connection. It remembers which identity
// each connection proved so Recheck can close revoked ones.
//
// Trap (nats-server v2.15): every ReloadOptions re-runs authorization for
// all connections, and first closes any client whose CONNECT carried an
// nkey or user name that is not in the server's configured user tables
// (clientHasMovedToDifferentAccount), which with custom authentication is
// every client. So once a connection is authenticated, its identity fields
// are cleared from its CONNECT options (under gate, which route reloads
// hold for writing, so the server never reads them while they change) and
// later checks of that connection go by its id.
type clientAuth struct {
	s    *Server
	gate sync.RWMutex // write-held while ReloadOptions runs

	mu       sync.Mutex
	conns    map[uint64]authConn // client id → proven identity and role
	internal map[uint64]bool     // in-process internal users
}

// authConn is what a connection proved and the role it was given. A
// leaf connection (a leaf member's server) also proved a certificate
// from a source address, which AllowLeaf is asked about again on every
// Recheck.
type authConn struct {
	node identity.NodePublic
	role Role

	leaf   bool
	remote netip.Addr
	cert   *x509.Certificate
	at     time.Time // when a leaf connection authenticated
}

// role is the role Config.Role gives node (RoleMember without a Role).
func (s *Server) role(node identity.NodePublic) Role {
	if s.cfg.Role == nil {
		return RoleMember
	}
	return s.cfg.Role(node)
}

// admitted reports whether a connection that proved node with role may
// stay: still authorized, with the role it was given.
func (a *clientAuth) admitted(ac authConn) bool {
	if ac.leaf && !a.s.cfg.Leaf.AllowLeaf(ac.remote, ac.cert) {
		return false
	}
	return a.s.cfg.Authorize(ac.node) && a.s.role(ac.node) == ac.role
}

func (a *clientAuth) Check(c server.ClientAuthentication) bool {
	// Leaf connections come here too: nats-server hands an inbound leaf
	// connection to CustomClientAuthentication when the leaf-node options
	// have no users or nkey of their own (isLeafNodeAuthorized falls
	// through to isClientAuthorized; TestTrapLeafAuthFallsThrough pins
	// it). Only a core server with a leaf listener accepts them.
	leaf := c.Kind() == server.LEAF
	if c.Kind() != server.CLIENT && !(leaf && a.s.cfg.leafListener()) {
		return false
	}
	id := c.GetID()
	a.mu.Lock()
	ac, known := a.conns[id]
	internal := a.internal[id]
	a.mu.Unlock()
	switch {
	case internal:
		return true
	case known:
		// A reload re-checking an authenticated connection. Its
		// permissions stay as registered; a changed role closes it.
		if a.admitted(ac) {
			return true
		}
		a.forget(id)
		a.s.log.Info("nats client closed: no longer a member, or its role changed", "node", ac.node.ShortString(), "cid", id)
		return false
	}
	if !a.gate.TryRLock() {
		// A route reload is running (and may be the caller): this
		// connection cannot be settled now. The client retries.
		a.s.log.Debug("nats client refused: raced a route reload", "cid", id)
		return false
	}
	defer a.gate.RUnlock()
	opts := c.GetOpts()
	if !leaf && isInProcess(c.RemoteAddress()) && opts.Username != "" {
		return a.checkInternal(c, opts, id)
	}
	if opts.Nkey == "" {
		a.s.log.Debug("nats client refused: no nkey", "remote", addrString(c.RemoteAddress()))
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(opts.Sig)
	if err != nil {
		// Older clients sent standard encoding.
		if sig, err = base64.StdEncoding.DecodeString(opts.Sig); err != nil {
			a.s.log.Info("nats client refused: bad signature encoding", "nkey", opts.Nkey)
			return false
		}
	}
	pub, err := nkeys.FromPublicKey(opts.Nkey)
	if err != nil {
		a.s.log.Info("nats client refused: bad nkey", "nkey", opts.Nkey, "err", err)
		return false
	}
	nonce := c.GetNonce()
	if len(nonce) == 0 || pub.Verify(nonce, sig) != nil {
		a.s.log.Info("nats client refused: signature over nonce does not verify", "nkey", opts.Nkey)
		return false
	}
	node, err := identity.NodePublicFromNKey(opts.Nkey)
	if err != nil {
		a.s.log.Info("nats client refused", "err", err)
		return false
	}
	// Record before asking, so a revocation racing this connection is
	// seen either here or by the Recheck that follows it. The role is
	// asked first so that the record and the permissions agree.
	ac = authConn{node: node, role: a.s.role(node)}
	if leaf {
		var ok bool
		if ac, ok = a.leafProof(c, ac); !ok {
			return false
		}
	}
	a.mu.Lock()
	a.conns[id] = ac
	a.mu.Unlock()
	if ac.role == RoleNone || !a.admitted(ac) {
		a.forget(id)
		a.s.log.Info("nats client refused: not a member", "node", node.ShortString(), "role", ac.role, "remote", addrString(c.RemoteAddress()))
		return false
	}
	// Permissions are attached here or never: nats-server has no call to
	// change a live connection's permissions from outside. No Account
	// (every client shares the global account) and no Username (see the
	// reload trap above).
	c.RegisterUser(&server.User{Permissions: a.s.permissionsFor(ac)})
	opts.Nkey, opts.Sig = "", ""
	return true
}

// leafProof checks what a leaf connection proves beyond its nkey: a
// certificate verified against the mesh CA for that same identity, from
// the overlay address of a live member whose certificate it is
// (AllowLeaf, like AllowRoute for routes), and a member's role: a phone
// runs no server. It returns ac with what it proved.
func (a *clientAuth) leafProof(c server.ClientAuthentication, ac authConn) (authConn, bool) {
	remote := addrOf(c.RemoteAddress())
	st := c.GetTLSConnectionState()
	if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		a.s.leafRefused.Add(1)
		a.s.log.Warn("nats leaf connection refused: no verified certificate", "remote", remote, "node", ac.node.ShortString())
		return ac, false
	}
	cert := st.VerifiedChains[0][0]
	if certNode, ok := identity.CertNode(cert); !ok || certNode != ac.node {
		a.s.leafRefused.Add(1)
		a.s.log.Warn("nats leaf connection refused: the certificate names another node than the nkey", "remote", remote, "node", ac.node.ShortString(), "cert", certName(cert))
		return ac, false
	}
	if ac.role != RoleMember && ac.role != RoleAdmin {
		a.s.leafRefused.Add(1)
		a.s.log.Warn("nats leaf connection refused: not a member's server", "remote", remote, "node", ac.node.ShortString(), "role", ac.role)
		return ac, false
	}
	if !remote.IsValid() || !a.s.cfg.Leaf.AllowLeaf(remote, cert) {
		a.s.leafRefused.Add(1)
		a.s.log.Warn("nats leaf connection refused: not a live member's address, or the certificate names another member", "remote", remote, "cert", certName(cert))
		return ac, false
	}
	ac.leaf, ac.remote, ac.cert, ac.at = true, remote, cert, time.Now()
	return ac, true
}

func (a *clientAuth) checkInternal(c server.ClientAuthentication, opts *server.ClientOpts, id uint64) bool {
	user, pass := opts.Username, opts.Password
	switch {
	case user == localUser && secretEqual(pass, a.s.localPass):
	case user == systemUser && secretEqual(pass, a.s.systemPass):
		ns := a.s.srv()
		if ns == nil || ns.SystemAccount() == nil {
			return false
		}
		c.RegisterUser(&server.User{Account: ns.SystemAccount()})
	default:
		return false
	}
	a.mu.Lock()
	a.internal[id] = true
	a.mu.Unlock()
	opts.Username, opts.Password = "", ""
	return true
}

// reset forgets every connection: the server they belonged to is gone
// (see Server.restart).
func (a *clientAuth) reset() {
	a.mu.Lock()
	clear(a.conns)
	clear(a.internal)
	a.mu.Unlock()
}

func (a *clientAuth) forget(id uint64) {
	a.mu.Lock()
	delete(a.conns, id)
	delete(a.internal, id)
	a.mu.Unlock()
}

// recheck closes connections whose identity is no longer authorized (or
// whose role changed) and forgets connections that are gone. It returns how many it closed.
func (a *clientAuth) recheck(ns *server.Server) int {
	a.mu.Lock()
	snap := make(map[uint64]authConn, len(a.conns))
	for id, ac := range a.conns {
		snap[id] = ac
	}
	var gone []uint64
	for id := range a.internal {
		if ns.GetClient(id) == nil {
			gone = append(gone, id)
		}
	}
	for _, id := range gone {
		delete(a.internal, id)
	}
	a.mu.Unlock()
	closed := 0
	for id, ac := range snap {
		if !connected(ns, id, ac) {
			a.forget(id)
			continue
		}
		if a.admitted(ac) {
			continue
		}
		err := ns.DisconnectClientByID(id)
		if err == nil {
			closed++
			a.s.log.Info("nats client closed: no longer a member, or its role changed", "node", ac.node.ShortString(), "cid", id, "leaf", ac.leaf)
		} else if ac.leaf {
			// Not in the leaf table yet (see leafRegisterGrace): the
			// next Recheck closes it.
			continue
		}
		a.forget(id)
	}
	return closed
}

// leafRegisterGrace is how long a leaf connection's record is kept before
// the server lists it: nats-server authenticates a leaf connection before
// it adds it to its leaf table (processLeafnodeConnect), so a Recheck in
// between must not forget it.
const leafRegisterGrace = 10 * time.Second

// connected reports whether connection id, which proved ac, may still be
// open: a client the server lists, or a leaf connection it lists or that
// authenticated moments ago.
func connected(ns *server.Server, id uint64, ac authConn) bool {
	if !ac.leaf {
		return ns.GetClient(id) != nil
	}
	return ns.GetLeafNode(id) != nil || time.Since(ac.at) < leafRegisterGrace
}

// routeAuth is the CustomRouterAuthentication. nats-server uses it INSTEAD
// of the cluster username/password check, so it checks the route secret
// itself as well as the remote address. TLS (mesh CA, both directions) has
// already been verified when it runs.
type routeAuth struct {
	s *Server

	mu sync.Mutex
	// accepted remembers what each accepted route proved, by connection
	// id, so that Recheck can ask AllowRoute again without a reload.
	accepted map[uint64]acceptedRoute
}

type acceptedRoute struct {
	remote netip.Addr
	cert   *x509.Certificate
}

// reset forgets every accepted route (see Server.restart).
func (a *routeAuth) reset() {
	a.mu.Lock()
	clear(a.accepted)
	a.mu.Unlock()
}

// stale asks AllowRoute again for every accepted route that is still up
// (live: route connection id → solicited) and returns how many it now
// refuses. Entries of routes that are gone are dropped.
func (a *routeAuth) stale(live map[uint64]bool) int {
	a.mu.Lock()
	check := make([]acceptedRoute, 0, len(a.accepted))
	for id, r := range a.accepted {
		solicited, up := live[id]
		if !up || solicited {
			delete(a.accepted, id)
			continue
		}
		check = append(check, r)
	}
	a.mu.Unlock()
	n := 0
	for _, r := range check {
		if !a.s.cfg.Cluster.AllowRoute(r.remote, r.cert) {
			n++
		}
	}
	return n
}

func (a *routeAuth) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.ROUTER {
		return false
	}
	remote := addrOf(c.RemoteAddress())
	cfg := &a.s.cfg.Cluster
	if cfg.RouteSecret != "" {
		opts := c.GetOpts()
		// Evaluate both comparisons: no early exit on the user name.
		userOK := secretEqual(opts.Username, RouteUser)
		passOK := secretEqual(opts.Password, cfg.RouteSecret)
		if !userOK || !passOK {
			a.s.routeRefused.Add(1)
			a.s.log.Warn("nats route refused: wrong route secret", "remote", remote)
			return false
		}
	}
	var cert *x509.Certificate
	if cfg.RouteTLS != nil {
		// Belt and braces: TLS already required a verified certificate.
		st := c.GetTLSConnectionState()
		if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
			a.s.routeRefused.Add(1)
			a.s.log.Warn("nats route refused: no verified certificate", "remote", remote)
			return false
		}
		cert = st.VerifiedChains[0][0]
	}
	if !remote.IsValid() || !cfg.AllowRoute(remote, cert) {
		a.s.routeRefused.Add(1)
		a.s.log.Warn("nats route refused: not a member address, or the certificate names another node", "remote", remote, "cert", certName(cert))
		a.mu.Lock()
		delete(a.accepted, c.GetID())
		a.mu.Unlock()
		return false
	}
	a.mu.Lock()
	a.accepted[c.GetID()] = acceptedRoute{remote: remote, cert: cert}
	a.mu.Unlock()
	return true
}

func certName(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	return c.Subject.CommonName
}

func isInProcess(a net.Addr) bool { return a != nil && a.Network() == "pipe" }

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap()
		}
	}
	if a != nil {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap.Addr().Unmap()
		}
	}
	return netip.Addr{}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
