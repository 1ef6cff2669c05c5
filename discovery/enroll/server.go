package enroll

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
)

// Members is the member table the endpoint reads and adds to; a
// *discovery.Discovery in a node. These three calls are all that crosses
// from the protocol into gossip.
type Members interface {
	// Members is the whole table, this node included.
	Members() []discovery.Member
	// Admit adds a member known from a signed join or hello request, so
	// that the node peers with it before gossip sees it.
	Admit(t *identity.Ticket, endpoints []netip.AddrPort) discovery.Member
	// NameTaken reports whether a member other than node holds name.
	NameTaken(name string, node identity.NodePublic) bool
}

var _ Members = (*discovery.Discovery)(nil)

// GossipKeys is where the endpoint finds the gossip key it hands to
// members (a *discovery.Discovery in a node).
type GossipKeys interface {
	// CurrentGossipKey is the newest rotated key and its notice; false
	// when the mesh never rotated.
	CurrentGossipKey() (identity.GossipKeyEntry, bool)
}

var _ GossipKeys = (*discovery.Discovery)(nil)

// ServerConfig configures the enrollment endpoint of a node.
type ServerConfig struct {
	// Member is this node; its certificate is presented to clients. A
	// member holding the CA (Member.CA) admits newcomers; any member
	// answers hello.
	Member *identity.Member
	// Mesh is handed to every newcomer: the settings it must share with
	// the rest of the mesh (the node's own, so they cannot drift). Its
	// member validity is also what this node issues and renews with.
	Mesh MeshParams
	// Invites is the token store; required when Member.CA is set.
	Invites *identity.Invites
	// Issued records the tickets this node issues, so that their names
	// and WireGuard keys stay reserved while they are valid; nil keeps no
	// record (only the live member table is checked).
	Issued *identity.Issued
	// Members supplies the member table and takes the admitted members.
	Members Members
	// Revocations is the node's revocation set: revoked identities are
	// neither admitted nor let back in.
	Revocations *identity.RevocationSet
	// GossipKeys supplies the gossip key for /v1/gossip-key; nil answers
	// epoch 0 (no rotation known).
	GossipKeys GossipKeys
	// OnAdmit is called with every admitted or re-introduced member before
	// the answer goes out, so that the node can add it as a WireGuard peer
	// before the member's first handshake.
	OnAdmit func(discovery.Member)
	Logger  *slog.Logger
	// MaxFailures refused requests from one address within FailureWindow
	// make further requests from it wait out the window (429). Defaults:
	// 10 per minute.
	MaxFailures   int
	FailureWindow time.Duration

	now func() time.Time // tests
	// answered, when set (tests), runs after an answer was written and
	// before it is flushed: a test can drop the connection there to lose
	// the answer on the way back.
	answered func(path string, w http.ResponseWriter)
}

// Server is the enrollment endpoint.
type Server struct {
	cfg        ServerConfig
	log        *slog.Logger
	cert       *identity.CertHolder
	tls        *tls.Config
	lim        *limiter
	tickets    *ticketLimiter // GET /v2/ticket, which the failure limit exempts
	challenges *challengeTable
	admitMu    sync.Mutex    // one admission at a time: names stay unique
	refusalLog *rate.Limiter // samples refusal log lines; locks itself
	stats      stats

	srvMu  sync.Mutex
	srv    *http.Server
	closed bool // Close ran: a later Serve returns at once
}

// NewServer prepares the enrollment endpoint.
func NewServer(cfg ServerConfig) (*Server, error) {
	m := cfg.Member
	if m == nil || m.ID == nil || m.Cert == nil || m.Trust == nil {
		return nil, errors.New("enrollment: ServerConfig.Member needs ID, Trust and Cert")
	}
	if cfg.Members == nil {
		return nil, errors.New("enrollment: ServerConfig.Members is required")
	}
	if cfg.Revocations == nil {
		return nil, errors.New("enrollment: ServerConfig.Revocations is required")
	}
	if m.CA != nil && cfg.Invites == nil {
		return nil, errors.New("enrollment: a node holding the CA needs its Invites store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 10
	}
	if cfg.FailureWindow <= 0 {
		cfg.FailureWindow = time.Minute
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	cert, err := chainCert(m.ID, m.Cert, m.Trust)
	if err != nil {
		return nil, err
	}
	holder := identity.NewCertHolder(cert)
	return &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "enroll"),
		cert:       holder,
		tls:        holder.ServerTLS(m.Trust),
		lim:        newLimiter(cfg.MaxFailures, cfg.FailureWindow),
		tickets:    newTicketLimiter(),
		challenges: newChallengeTable(),
		refusalLog: rate.NewLimiter(rate.Every(time.Second), 10),
	}, nil
}

// chainCert is the node certificate with the CA certificate riding along:
// a newcomer pins the CA by fingerprint.
func chainCert(id *identity.Identity, nc *identity.NodeCert, trust *identity.Trust) (tls.Certificate, error) {
	cert, err := id.TLSCertificate(nc)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("enrollment: %w", err)
	}
	cert.Certificate = append(cert.Certificate, trust.Cert.Raw)
	return cert, nil
}

// SetCertificate presents nc (a renewed node certificate) from the next
// TLS handshake on; connections already open keep theirs.
func (s *Server) SetCertificate(nc *identity.NodeCert) error {
	m := s.cfg.Member
	cert, err := chainCert(m.ID, nc, m.Trust)
	if err != nil {
		return err
	}
	s.cert.Set(cert)
	return nil
}

// Serve answers enrollment requests on ln (TLS is added here) until Close.
func (s *Server) Serve(ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(debugWriter{s.log}, "", 0),
	}
	s.srvMu.Lock()
	if s.closed {
		s.srvMu.Unlock()
		ln.Close()
		return nil
	}
	s.srv = srv
	s.srvMu.Unlock()
	err := srv.ServeTLS(limitConns(ln), "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops Serve, also one that has not started yet.
func (s *Server) Close() error {
	s.srvMu.Lock()
	srv := s.srv
	s.closed = true
	s.srvMu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// debugWriter sends net/http's own complaints (TLS handshakes from
// scanners) to debug level: they are noise on an endpoint open to the
// underlay.
type debugWriter struct{ log *slog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}

// apiError is a refusal: status, stable code, human message, and for
// CodeRevoked the CA-signed record when one is held.
type apiError struct {
	status     int
	code       string
	msg        string
	revocation []byte
}

func fail(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// Handler is the endpoint without TLS (Serve adds it).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := s.cfg.now()
		from := remoteAddr(r)
		// The admitting node's own ticket (the first step of a join) is
		// a fixed, CA-signed answer about the box the caller already
		// reached: the failure limit does not apply to it, so that a
		// valid token can still get through from a prefix others abused,
		// but it has a bucket of its own (per prefix and endpoint-wide),
		// so that it cannot be asked for without end.
		ownTicket := r.URL.Path == "/v2/ticket" && r.Method == http.MethodGet
		if ownTicket && !s.tickets.allow(from, now) {
			s.stats.limit()
			w.Header().Set("Retry-After", fmt.Sprint(int(ticketRetryAfter.Seconds())))
			w.Header().Set("Connection", "close")
			writeError(w, fail(http.StatusTooManyRequests, CodeRateLimited, "too many ticket requests from %s; try again later", from))
			return
		}
		if !ownTicket && s.lim.limited(from, now) && !s.carriesValidToken(w, r, now) {
			s.stats.limit()
			w.Header().Set("Retry-After", fmt.Sprint(int(s.lim.window.Seconds())))
			// The connection goes too: a limited caller does not get to
			// keep a TLS session open for its next guess.
			w.Header().Set("Connection", "close")
			writeError(w, fail(http.StatusTooManyRequests, CodeRateLimited, "too many refused requests from %s; try again later", from))
			return
		}
		var out any
		var aerr *apiError
		switch {
		case r.URL.Path == "/v1/join":
			aerr = fail(http.StatusBadRequest, CodeVersion, "join v1 is no longer accepted (it does not prove the WireGuard key): upgrade the joining meshnode to one that speaks join v2")
		case r.URL.Path == "/v2/join" && r.Method == http.MethodPost:
			out, aerr = s.join(w, r, now)
		case r.URL.Path == "/v2/ticket" && r.Method == http.MethodGet:
			out, aerr = s.ownTicket()
		case r.URL.Path == "/v1/hello" && r.Method == http.MethodPost:
			out, aerr = s.hello(w, r, now)
		case r.URL.Path == "/v1/renew" && r.Method == http.MethodPost:
			out, aerr = s.renew(w, r, now)
		case r.URL.Path == "/v1/gossip-key" && r.Method == http.MethodPost:
			out, aerr = s.gossipKey(w, r, now)
		case r.URL.Path == "/v1/challenge" && r.Method == http.MethodGet:
			var ch []byte
			if ch, aerr = s.challenges.issue(from, now); aerr == nil {
				out = challengeResponse{Challenge: ch}
			}
		case r.URL.Path == "/v2/join" || r.URL.Path == "/v2/ticket" || r.URL.Path == "/v1/hello" || r.URL.Path == "/v1/renew" || r.URL.Path == "/v1/challenge" || r.URL.Path == "/v1/gossip-key":
			aerr = fail(http.StatusMethodNotAllowed, CodeMethod, "%s is not allowed on %s", r.Method, r.URL.Path)
		default:
			aerr = fail(http.StatusNotFound, CodeNotFound, "no such endpoint %s", r.URL.Path)
		}
		if aerr != nil {
			if r.URL.Path == "/v1/join" || r.URL.Path == "/v2/join" {
				s.stats.refuse(aerr.code)
			}
			// A member without the CA answering a join is no failure of
			// the caller's: it is pointed at an admin instead.
			if aerr.status < 500 && aerr.code != CodeNoCA {
				s.lim.failed(from, now)
			}
			if s.refusalLog.Allow() {
				s.log.Info("enrollment request refused", "from", from, "path", r.URL.Path, "code", aerr.code, "err", truncate(aerr.msg))
			}
			writeError(w, aerr)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
		if s.cfg.answered != nil {
			s.cfg.answered(r.URL.Path, w)
		}
	})
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(errorResponse{Error: e.msg, Code: e.code, Revocation: e.revocation})
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func tokenError(err error) *apiError {
	switch {
	case errors.Is(err, identity.ErrTokenMalformed):
		return fail(http.StatusBadRequest, CodeMalformed, "%v", err)
	case errors.Is(err, identity.ErrTokenUnknown):
		return fail(http.StatusForbidden, CodeTokenUnknown, "%v", err)
	case errors.Is(err, identity.ErrTokenWrongMesh):
		return fail(http.StatusForbidden, CodeTokenMesh, "%v", err)
	case errors.Is(err, identity.ErrTokenExpired):
		return fail(http.StatusGone, CodeTokenExpired, "%v", err)
	case errors.Is(err, identity.ErrTokenUsed):
		return fail(http.StatusGone, CodeTokenUsed, "%v", err)
	}
	return fail(http.StatusInternalServerError, CodeInternalError, "token store: %v", err)
}

// noCA is the refusal of a node without the CA key. It names no admin:
// the caller is not authenticated yet, and the CA holder's name and
// underlay endpoints would tell an attacker which box to go for. Members
// find admins in their own member table (status lists roles).
func (s *Server) noCA(what string) *apiError {
	return fail(http.StatusMisdirectedRequest, CodeNoCA, "this node (%s) does not hold the mesh CA and cannot %s; ask a member that does", s.cfg.Member.Ticket.Name, what)
}

func (s *Server) join(w http.ResponseWriter, r *http.Request, now time.Time) (any, *apiError) {
	body, aerr := readBody(w, r)
	if aerr != nil {
		return nil, aerr
	}
	req, aerr := decodeJoinRequest(body)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.checkDialable(req.Endpoints); aerr != nil {
		return nil, aerr
	}
	ca := s.cfg.Member.CA
	if ca == nil {
		return nil, s.noCA("admit members")
	}
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	// Everything is checked before anything changes: only Redeem and
	// what follows it leave a trace. A token already redeemed for this
	// very identity and name passes: the newcomer lost our answer and
	// asks again, and gets the same admission (fresh credentials for the
	// same name, identity and roles).
	roles, err := s.cfg.Invites.CheckFor(req.Token, req.Node, req.Name, now)
	if err != nil {
		return nil, tokenError(err)
	}
	if s.cfg.Revocations.IsRevoked(req.Node) {
		return nil, s.revoked(req.Node)
	}
	if s.cfg.Members.NameTaken(req.Name, req.Node) {
		return nil, fail(http.StatusConflict, CodeNameTaken, "name %q is taken by another member", req.Name)
	}
	if aerr := s.checkJoinKeys(req, now); aerr != nil {
		return nil, aerr
	}
	roles &^= identity.RoleCore
	if core, err := s.coreRole(req.Node, now); err != nil {
		return nil, fail(http.StatusInternalServerError, CodeInternalError, "core set: %v", err)
	} else if core {
		roles |= identity.RoleCore
	}
	e, err := ca.EnrollFor(req.Name, req.Node, req.WireGuard, roles, now, s.cfg.Mesh.MemberValidity())
	if err != nil {
		return nil, fail(http.StatusInternalServerError, CodeInternalError, "issue: %v", err)
	}
	e.RouteSecret = s.cfg.Member.RouteSecret
	t, err := identity.ParseTicket(e.Ticket)
	if err != nil {
		return nil, fail(http.StatusInternalServerError, CodeInternalError, "issue: %v", err)
	}
	// The answer is built before the token is spent: a table that cannot
	// be encoded must not cost the newcomer its token.
	resp := joinResponse{
		CACert:      string(s.cfg.Member.Trust.PEM),
		Ticket:      e.Ticket,
		NodeCert:    string(e.NodeCertPEM),
		RouteSecret: e.RouteSecret,
		Mesh:        s.cfg.Mesh,
	}
	if resp.Members, aerr = s.records(req.Node); aerr != nil {
		return nil, aerr
	}
	if aerr := s.reserve(t, now); aerr != nil {
		return nil, aerr
	}
	if _, err := s.cfg.Invites.RedeemFor(req.Token, req.Node, req.Name, now); err != nil {
		return nil, tokenError(err)
	}
	m := s.cfg.Members.Admit(t, req.Endpoints)
	s.stats.admit()
	if s.cfg.OnAdmit != nil {
		s.cfg.OnAdmit(m)
	}
	s.log.Info("member admitted", "name", req.Name, "node", req.Node.ShortString(), "roles", roles, "from", remoteAddr(r))
	return resp, nil
}

// records is the member table as sent to a member, without that member.
func (s *Server) records(except identity.NodePublic) (json.RawMessage, *apiError) {
	var out []discovery.Member
	for _, m := range s.cfg.Members.Members() {
		if m.Node != except {
			out = append(out, m)
		}
	}
	b, err := discovery.EncodeRecords(out)
	if err != nil {
		return nil, fail(http.StatusInternalServerError, CodeInternalError, "%v", err)
	}
	return b, nil
}

func (s *Server) hello(w http.ResponseWriter, r *http.Request, now time.Time) (any, *apiError) {
	body, aerr := readBody(w, r)
	if aerr != nil {
		return nil, aerr
	}
	req, t, aerr := decodeHelloRequest(body)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.checkDialable(req.Endpoints); aerr != nil {
		return nil, aerr
	}
	if err := t.Verify(s.cfg.Member.Trust, now); err != nil {
		return nil, fail(http.StatusForbidden, CodeBadTicket, "%v", err)
	}
	if aerr := s.checkProof(t, req.signed(), req.Signature, req.Challenge, r, now, "hello"); aerr != nil {
		return nil, aerr
	}
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	if s.cfg.Members.NameTaken(t.Name, t.Node) {
		return nil, fail(http.StatusConflict, CodeNameTaken, "name %q is held by another member", t.Name)
	}
	m := s.cfg.Members.Admit(t, req.Endpoints)
	if s.cfg.OnAdmit != nil {
		s.cfg.OnAdmit(m)
	}
	s.log.Info("member re-introduced itself", "name", t.Name, "node", t.Node.ShortString(), "from", remoteAddr(r))
	members, aerr := s.records(t.Node)
	if aerr != nil {
		return nil, aerr
	}
	return helloResponse{Members: members}, nil
}

// RenewGrace is how long after its ticket expired a member may still renew
// it by itself: as long again as the ticket's own lifetime (a year in a
// mesh of year-long tickets, 3 minutes in a test mesh of 3-minute ones).
//
// Renewal proves the identity key and a CA-signed ticket; what it cannot
// prove is that the operator still wants the box. Revocation is the
// answer for a box known to be gone, but boxes also get forgotten in a
// drawer or stolen unnoticed: without a bound, any old disk would let
// itself back in forever. One lifetime lets a node that was off for up to
// a whole renewal period come back on its own (an appliance stored for a
// season, a lab VM paused over a long test), scales with the mesh's own
// choice of lifetime, and past it the operator decides with a new token.
func RenewGrace(t *identity.Ticket) time.Duration { return t.Lifetime() }

// renew issues a fresh ticket and node certificate to a member that
// proves its identity over a challenge, with its current ticket, even an
// expired one within RenewGrace. Name, identity, WireGuard key and roles
// are the ticket's; the lifetime is the mesh's. The member is re-added to
// the table (like hello) so that a node whose expired ticket made members
// forget it becomes a WireGuard peer again and gossip can reach it.
func (s *Server) renew(w http.ResponseWriter, r *http.Request, now time.Time) (any, *apiError) {
	body, aerr := readBody(w, r)
	if aerr != nil {
		return nil, aerr
	}
	req, t, aerr := decodeRenewRequest(body)
	if aerr != nil {
		return nil, aerr
	}
	ca := s.cfg.Member.CA
	if ca == nil {
		return nil, s.noCA("renew members")
	}
	if err := t.VerifySignature(s.cfg.Member.Trust); err != nil {
		return nil, fail(http.StatusForbidden, CodeBadTicket, "%v", err)
	}
	if now.Add(identity.ClockSkew).Before(t.NotBefore) {
		return nil, fail(http.StatusForbidden, CodeBadTicket, "ticket for %q is not valid before %s", t.Name, t.NotBefore.UTC().Format(time.RFC3339))
	}
	if grace := RenewGrace(t); now.After(t.NotAfter.Add(grace)) {
		return nil, fail(http.StatusForbidden, CodeRenewTooLate, "ticket for %q expired at %s, more than %s ago: join again with a new token",
			t.Name, t.NotAfter.UTC().Format(time.RFC3339), grace)
	}
	if aerr := s.checkProof(t, req.signed(), req.Signature, req.Challenge, r, now, "renew request"); aerr != nil {
		return nil, aerr
	}
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	if s.cfg.Members.NameTaken(t.Name, t.Node) {
		return nil, fail(http.StatusConflict, CodeNameTaken, "name %q is held by another member", t.Name)
	}
	e, err := ca.EnrollFor(t.Name, t.Node, t.WireGuard, t.Roles, now, s.cfg.Mesh.MemberValidity())
	if err != nil {
		return nil, fail(http.StatusInternalServerError, CodeInternalError, "issue: %v", err)
	}
	nt, err := identity.ParseTicket(e.Ticket)
	if err != nil {
		return nil, fail(http.StatusInternalServerError, CodeInternalError, "issue: %v", err)
	}
	// The renewed ticket keeps the name and keys reserved for its new
	// lifetime (the register of issued tickets, see reserve).
	if aerr := s.reserve(nt, now); aerr != nil {
		return nil, aerr
	}
	m := s.cfg.Members.Admit(nt, req.Endpoints)
	if s.cfg.OnAdmit != nil {
		s.cfg.OnAdmit(m)
	}
	s.log.Info("member renewed", "name", t.Name, "node", t.Node.ShortString(), "expired", t.Expired(now),
		"not_after", nt.NotAfter, "from", remoteAddr(r))
	members, aerr := s.records(t.Node)
	if aerr != nil {
		return nil, aerr
	}
	return renewResponse{Ticket: e.Ticket, NodeCert: string(e.NodeCertPEM), Mesh: s.cfg.Mesh, Members: members}, nil
}

// checkProof is what hello and renew ask of a member speaking for its
// ticket t: the request (what) is signed by the ticket's identity over a
// fresh challenge this endpoint issued to the caller's prefix, used once,
// and the identity is not revoked. The challenge is taken only after the
// signature checks out, so only members can use challenges up.
func (s *Server) checkProof(t *identity.Ticket, signed, sig, challenge []byte, r *http.Request, now time.Time, what string) *apiError {
	if !t.Node.Verify(signed, sig) {
		return fail(http.StatusBadRequest, CodeBadSignature, "%s is not signed by the ticket's identity %s", what, t.Node.ShortString())
	}
	if !s.challenges.take(challenge, remoteAddr(r), now) {
		return fail(http.StatusForbidden, CodeBadChallenge, "challenge unknown, used or expired: ask for a fresh one")
	}
	if s.cfg.Revocations.IsRevoked(t.Node) {
		return s.revoked(t.Node)
	}
	return nil
}

// revoked is the refusal of a revoked identity. It carries the CA-signed
// record: a box that was away when it was revoked is cut off by every
// member, and would otherwise never learn why. The record tells it
// nothing it could use (it names the box itself, its issuer and the
// reason), and only a caller that proved the identity, or named it in a
// join, gets it.
func (s *Server) revoked(node identity.NodePublic) *apiError {
	e := fail(http.StatusForbidden, CodeRevoked, "identity %s has been revoked", node.ShortString())
	if r, ok := s.cfg.Revocations.Get(node); ok {
		e.msg = fmt.Sprintf("identity %s has been %s", node.ShortString(), r.Summary())
		e.revocation = r.Marshal()
	}
	return e
}

// gossipKey hands the newest gossip key to a member that proves its
// identity over a challenge, with a valid ticket, and is not revoked
// (checkProof, as for hello and renew). The key travels only inside this
// TLS connection; the notice lets the member check it is the key the CA
// announced.
func (s *Server) gossipKey(w http.ResponseWriter, r *http.Request, now time.Time) (any, *apiError) {
	body, aerr := readBody(w, r)
	if aerr != nil {
		return nil, aerr
	}
	req, t, aerr := decodeGossipKeyRequest(body)
	if aerr != nil {
		return nil, aerr
	}
	if err := t.Verify(s.cfg.Member.Trust, now); err != nil {
		return nil, fail(http.StatusForbidden, CodeBadTicket, "%v", err)
	}
	if aerr := s.checkProof(t, req.signed(), req.Signature, req.Challenge, r, now, "gossip key request"); aerr != nil {
		return nil, aerr
	}
	if s.cfg.GossipKeys == nil {
		return gossipKeyResponse{}, nil
	}
	e, ok := s.cfg.GossipKeys.CurrentGossipKey()
	if !ok {
		return gossipKeyResponse{}, nil
	}
	s.log.Info("gossip key handed out", "name", t.Name, "node", t.Node.ShortString(), "epoch", e.Notice.Epoch, "from", remoteAddr(r))
	return gossipKeyResponse{Epoch: e.Notice.Epoch, Notice: e.Notice.Marshal(), Key: e.Key[:]}, nil
}
