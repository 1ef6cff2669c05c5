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

// ServerConfig configures the enrollment endpoint of a node.
type ServerConfig struct {
	// Member is this node; its certificate is presented to clients. A
	// member holding the CA (Member.CA) admits newcomers; any member
	// answers hello.
	Member *identity.Member
	// Mesh is handed to every newcomer: the settings it must share with
	// the rest of the mesh (the node's own, so they cannot drift).
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
}

// Server is the enrollment endpoint.
type Server struct {
	cfg        ServerConfig
	log        *slog.Logger
	tls        *tls.Config
	lim        *limiter
	challenges *challengeTable
	admitMu    sync.Mutex // one admission at a time: names stay unique
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
	cert, err := m.ID.TLSCertificate(m.Cert)
	if err != nil {
		return nil, fmt.Errorf("enrollment: %w", err)
	}
	// The CA certificate rides along: a newcomer pins it by fingerprint.
	cert.Certificate = append(cert.Certificate, m.Trust.Cert.Raw)
	return &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "enroll"),
		tls:        identity.ServerTLS(cert, m.Trust),
		lim:        newLimiter(cfg.MaxFailures, cfg.FailureWindow),
		challenges: newChallengeTable(),
	}, nil
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
	err := srv.ServeTLS(ln, "", "")
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

// apiError is a refusal: status, stable code, human message.
type apiError struct {
	status int
	code   string
	msg    string
}

func fail(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// Handler is the endpoint without TLS (Serve adds it).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := s.cfg.now()
		from := remoteAddr(r)
		if s.lim.limited(from, now) {
			s.stats.limit()
			w.Header().Set("Retry-After", fmt.Sprint(int(s.lim.window.Seconds())))
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
		case r.URL.Path == "/v1/challenge" && r.Method == http.MethodGet:
			var ch []byte
			if ch, aerr = s.challenges.issue(from, now); aerr == nil {
				out = challengeResponse{Challenge: ch}
			}
		case r.URL.Path == "/v2/join" || r.URL.Path == "/v2/ticket" || r.URL.Path == "/v1/hello" || r.URL.Path == "/v1/challenge":
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
			s.log.Info("enrollment request refused", "from", from, "path", r.URL.Path, "code", aerr.code, "err", aerr.msg)
			writeError(w, aerr)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(errorResponse{Error: e.msg, Code: e.code})
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
		// No admin is named: the caller is not authenticated, and the CA
		// holder's name and underlay endpoints tell an attacker which box
		// to go for. The operator knows the admins (status lists roles).
		return nil, fail(http.StatusMisdirectedRequest, CodeNoCA, "this node (%s) does not hold the mesh CA and cannot admit members; join through a member that does", s.cfg.Member.Ticket.Name)
	}
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	// Everything is checked before anything changes: only Redeem and
	// what follows it leave a trace.
	roles, err := s.cfg.Invites.Check(req.Token, now)
	if err != nil {
		return nil, tokenError(err)
	}
	if s.cfg.Revocations.IsRevoked(req.Node) {
		return nil, fail(http.StatusForbidden, CodeRevoked, "identity %s has been revoked", req.Node.ShortString())
	}
	if s.cfg.Members.NameTaken(req.Name, req.Node) {
		return nil, fail(http.StatusConflict, CodeNameTaken, "name %q is taken by another member", req.Name)
	}
	if aerr := s.checkJoinKeys(req, now); aerr != nil {
		return nil, aerr
	}
	e, err := ca.Enroll(req.Name, req.Node, req.WireGuard, roles, now)
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
	if _, err := s.cfg.Invites.Redeem(req.Token, req.Name+" "+req.Node.ShortString(), now); err != nil {
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
	if !t.Node.Verify(req.signed(), req.Signature) {
		return nil, fail(http.StatusBadRequest, CodeBadSignature, "hello is not signed by the ticket's identity %s", t.Node.ShortString())
	}
	if !s.challenges.take(req.Challenge, now) {
		return nil, fail(http.StatusForbidden, CodeBadChallenge, "challenge unknown, used or expired: ask for a fresh one")
	}
	if s.cfg.Revocations.IsRevoked(t.Node) {
		return nil, fail(http.StatusForbidden, CodeRevoked, "identity %s has been revoked", t.Node.ShortString())
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
