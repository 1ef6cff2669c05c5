package discovery

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// ServerConfig configures the enrollment endpoint of a node.
type ServerConfig struct {
	// Member is this node; its certificate is presented to clients. A
	// member holding the CA (Member.CA) admits newcomers; any member
	// answers hello.
	Member *identity.Member
	// BootstrapExpect is handed to newcomers in MeshParams (0 omits it).
	BootstrapExpect int
	// Invites is the token store; required when Member.CA is set.
	Invites *identity.Invites
	// Discovery supplies the member table, the revocations, and takes the
	// admitted members.
	Discovery *Discovery
	// OnAdmit is called with every admitted or re-introduced member before
	// the answer goes out, so that the node can add it as a WireGuard peer
	// before the member's first handshake.
	OnAdmit func(Member)
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
	cfg     ServerConfig
	log     *slog.Logger
	d       *Discovery
	tls     *tls.Config
	admitMu sync.Mutex // one admission at a time: names stay unique

	chMu       sync.Mutex
	challenges map[string]issuedChallenge

	limMu    sync.Mutex
	failures map[netip.Addr]*failures

	srvMu sync.Mutex
	srv   *http.Server
}

// issuedChallenge is an outstanding challenge: who asked, until when.
type issuedChallenge struct {
	from    netip.Addr
	expires time.Time
}

type failures struct {
	n     int
	first time.Time
}

const (
	challengeTTL  = time.Minute
	maxChallenges = 1024
	// One address may hold only a few outstanding challenges, so a single
	// caller cannot take every slot and lock out honest members.
	maxChallengesPerAddr = 16
	maxFailureTrack      = 10000
	maxTokenLength       = 200
)

// NewServer prepares the enrollment endpoint.
func NewServer(cfg ServerConfig) (*Server, error) {
	m := cfg.Member
	if m == nil || m.ID == nil || m.Cert == nil || m.Trust == nil {
		return nil, errors.New("enrollment: ServerConfig.Member needs ID, Trust and Cert")
	}
	if cfg.Discovery == nil {
		return nil, errors.New("enrollment: ServerConfig.Discovery is required")
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
		d:          cfg.Discovery,
		tls:        identity.ServerTLS(cert, m.Trust),
		challenges: map[string]issuedChallenge{},
		failures:   map[netip.Addr]*failures{},
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
	s.srv = srv
	s.srvMu.Unlock()
	err := srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops Serve.
func (s *Server) Close() error {
	s.srvMu.Lock()
	srv := s.srv
	s.srvMu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

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
	admin  *adminHint
}

func fail(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// Handler is the endpoint without TLS (Serve adds it).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := s.cfg.now()
		from := remoteAddr(r)
		if s.limited(from, now) {
			w.Header().Set("Retry-After", fmt.Sprint(int(s.cfg.FailureWindow.Seconds())))
			writeError(w, fail(http.StatusTooManyRequests, CodeRateLimited, "too many refused requests from %s; try again later", from))
			return
		}
		var out any
		var aerr *apiError
		switch {
		case r.URL.Path == "/v1/join" && r.Method == http.MethodPost:
			out, aerr = s.join(w, r, now)
		case r.URL.Path == "/v1/hello" && r.Method == http.MethodPost:
			out, aerr = s.hello(w, r, now)
		case r.URL.Path == "/v1/challenge" && r.Method == http.MethodGet:
			out, aerr = s.challenge(from, now)
		case r.URL.Path == "/v1/join" || r.URL.Path == "/v1/hello" || r.URL.Path == "/v1/challenge":
			aerr = fail(http.StatusMethodNotAllowed, CodeMethod, "%s is not allowed on %s", r.Method, r.URL.Path)
		default:
			aerr = fail(http.StatusNotFound, CodeNotFound, "no such endpoint %s", r.URL.Path)
		}
		if aerr != nil {
			if aerr.status < 500 && aerr.code != CodeNoCA {
				s.failed(from, now)
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
	json.NewEncoder(w).Encode(errorResponse{Error: e.msg, Code: e.code, Admin: e.admin})
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Server) limited(a netip.Addr, now time.Time) bool {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	f := s.failures[a]
	if f == nil {
		return false
	}
	if now.Sub(f.first) > s.cfg.FailureWindow {
		delete(s.failures, a)
		return false
	}
	return f.n >= s.cfg.MaxFailures
}

func (s *Server) failed(a netip.Addr, now time.Time) {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	if len(s.failures) >= maxFailureTrack {
		for k, f := range s.failures {
			if now.Sub(f.first) > s.cfg.FailureWindow {
				delete(s.failures, k)
			}
		}
		if len(s.failures) >= maxFailureTrack {
			clear(s.failures)
		}
	}
	f := s.failures[a]
	if f == nil || now.Sub(f.first) > s.cfg.FailureWindow {
		f = &failures{first: now}
		s.failures[a] = f
	}
	f.n++
}

// readBody reads a capped request body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fail(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body exceeds %d bytes", maxRequestBody)
	}
	if err != nil {
		return nil, fail(http.StatusBadRequest, CodeMalformed, "reading request: %v", err)
	}
	return b, nil
}

// decodeStrict decodes exactly one JSON object with no unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// decodeJoinRequest parses and checks a join request as far as possible
// without state: shape, names, keys, endpoints and the signature.
func decodeJoinRequest(b []byte) (*joinRequest, *apiError) {
	var req joinRequest
	if err := decodeStrict(b, &req); err != nil {
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: %v", err)
	}
	switch {
	case req.Version != enrollVersion:
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request version %d, this node speaks %d", req.Version, enrollVersion)
	case req.Node.IsZero():
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: no identity key")
	case req.WireGuard.IsZero():
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: no WireGuard key")
	case req.Token == "" || len(req.Token) > maxTokenLength:
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: no token or an overlong one")
	case len(req.Signature) != ed25519.SignatureSize:
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: signature is %d bytes, want %d", len(req.Signature), ed25519.SignatureSize)
	}
	if err := identity.ValidateName(req.Name); err != nil {
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: %v", err)
	}
	if err := checkEndpoints(req.Endpoints); err != nil {
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: %v", err)
	}
	if !req.Node.Verify(req.signed(), req.Signature) {
		return nil, fail(http.StatusBadRequest, CodeBadSignature, "join request is not signed by identity %s", req.Node.ShortString())
	}
	return &req, nil
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

// adminHint names an admin member, preferring live ones.
func (s *Server) adminHint() *adminHint {
	var best *Member
	for _, m := range s.d.Members() {
		if !m.Roles.Has(identity.RoleAdmin) {
			continue
		}
		if best == nil || (m.State == StateAlive && best.State != StateAlive) {
			best = &m
		}
	}
	if best == nil {
		return nil
	}
	return &adminHint{Name: best.Name, Endpoints: best.Endpoints}
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
	ca := s.cfg.Member.CA
	if ca == nil {
		e := fail(http.StatusMisdirectedRequest, CodeNoCA, "this node (%s) does not hold the mesh CA and cannot admit members", s.cfg.Member.Ticket.Name)
		if e.admin = s.adminHint(); e.admin != nil {
			e.msg += fmt.Sprintf("; join through admin member %q", e.admin.Name)
		}
		return nil, e
	}
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	// Everything is checked before anything changes: only Redeem and
	// what follows it leave a trace.
	roles, err := s.cfg.Invites.Check(req.Token, now)
	if err != nil {
		return nil, tokenError(err)
	}
	if s.d.revs.IsRevoked(req.Node) {
		return nil, fail(http.StatusForbidden, CodeRevoked, "identity %s has been revoked", req.Node.ShortString())
	}
	if s.d.nameTaken(req.Name, req.Node) {
		return nil, fail(http.StatusConflict, CodeNameTaken, "name %q is taken by another member", req.Name)
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
	if _, err := s.cfg.Invites.Redeem(req.Token, req.Name+" "+req.Node.ShortString(), now); err != nil {
		return nil, tokenError(err)
	}
	m := s.d.addPending(t, req.Endpoints)
	if s.cfg.OnAdmit != nil {
		s.cfg.OnAdmit(m)
	}
	s.log.Info("member admitted", "name", req.Name, "node", req.Node.ShortString(), "roles", roles, "from", remoteAddr(r))
	return joinResponse{
		CACert:      string(s.cfg.Member.Trust.PEM),
		Ticket:      e.Ticket,
		NodeCert:    string(e.NodeCertPEM),
		RouteSecret: e.RouteSecret,
		Mesh: MeshParams{
			Name:            s.cfg.Member.Trust.Mesh,
			Prefix:          s.cfg.Member.Trust.Prefix(),
			GossipPort:      s.d.cfg.Port,
			MTU:             MTU,
			BootstrapExpect: s.cfg.BootstrapExpect,
		},
		Members: s.records(req.Node),
	}, nil
}

// records is the member table as sent to a member, without that member.
func (s *Server) records(except identity.NodePublic) []record {
	out := []record{}
	for _, m := range s.d.Members() {
		if m.Node != except {
			out = append(out, m.record())
		}
	}
	return out
}

func (s *Server) challenge(from netip.Addr, now time.Time) (any, *apiError) {
	ch := make([]byte, challengeSize)
	if _, err := rand.Read(ch); err != nil {
		return nil, fail(http.StatusInternalServerError, CodeInternalError, "challenge: %v", err)
	}
	s.chMu.Lock()
	defer s.chMu.Unlock()
	mine := 0
	for k, c := range s.challenges {
		switch {
		case now.After(c.expires):
			delete(s.challenges, k)
		case c.from == from:
			mine++
		}
	}
	if mine >= maxChallengesPerAddr {
		return nil, fail(http.StatusTooManyRequests, CodeRateLimited, "%s holds %d unused challenges; use or let them expire (%s)", from, mine, challengeTTL)
	}
	if len(s.challenges) >= maxChallenges {
		return nil, fail(http.StatusServiceUnavailable, CodeUnavailable, "too many outstanding challenges")
	}
	s.challenges[string(ch)] = issuedChallenge{from: from, expires: now.Add(challengeTTL)}
	return challengeResponse{Challenge: ch}, nil
}

// takeChallenge uses up a challenge this server issued and that is fresh.
func (s *Server) takeChallenge(ch []byte, now time.Time) bool {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	c, ok := s.challenges[string(ch)]
	delete(s.challenges, string(ch))
	return ok && !now.After(c.expires)
}

func decodeHelloRequest(b []byte) (*helloRequest, *identity.Ticket, *apiError) {
	var req helloRequest
	if err := decodeStrict(b, &req); err != nil {
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request: %v", err)
	}
	switch {
	case req.Version != enrollVersion:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request version %d, this node speaks %d", req.Version, enrollVersion)
	case len(req.Challenge) != challengeSize:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request: challenge is %d bytes, want %d", len(req.Challenge), challengeSize)
	case len(req.Signature) != ed25519.SignatureSize:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request: signature is %d bytes, want %d", len(req.Signature), ed25519.SignatureSize)
	}
	if err := checkEndpoints(req.Endpoints); err != nil {
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request: %v", err)
	}
	t, err := identity.ParseTicket(req.Ticket)
	if err != nil {
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request: %v", err)
	}
	return &req, t, nil
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
	if err := t.Verify(s.cfg.Member.Trust, now); err != nil {
		return nil, fail(http.StatusForbidden, CodeBadTicket, "%v", err)
	}
	if !t.Node.Verify(req.signed(), req.Signature) {
		return nil, fail(http.StatusBadRequest, CodeBadSignature, "hello is not signed by the ticket's identity %s", t.Node.ShortString())
	}
	if !s.takeChallenge(req.Challenge, now) {
		return nil, fail(http.StatusForbidden, CodeBadChallenge, "challenge unknown, used or expired: ask for a fresh one")
	}
	if s.d.revs.IsRevoked(t.Node) {
		return nil, fail(http.StatusForbidden, CodeRevoked, "identity %s has been revoked", t.Node.ShortString())
	}
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	if s.d.nameTaken(t.Name, t.Node) {
		return nil, fail(http.StatusConflict, CodeNameTaken, "name %q is held by another member", t.Name)
	}
	m := s.d.addPending(t, req.Endpoints)
	if s.cfg.OnAdmit != nil {
		s.cfg.OnAdmit(m)
	}
	s.log.Info("member re-introduced itself", "name", t.Name, "node", t.Node.ShortString(), "from", remoteAddr(r))
	return helloResponse{Members: s.records(t.Node)}, nil
}
