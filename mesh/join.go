package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/discovery/enroll"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// JoinRequest says whom to ask and as whom.
type JoinRequest struct {
	// Peer is a member's enrollment endpoint on the underlay, host[:port]
	// (default port defaults.EnrollPort).
	Peer string
	// Token is the one-time join token from `meshnode invite`.
	Token string
	// Name is this node's name in the mesh (a DNS label).
	Name string
	// KeepBootstrapExpect keeps cfg.BootstrapExpect because the operator
	// chose it; otherwise the mesh's value is adopted.
	KeepBootstrapExpect bool
}

// JoinResult is what a successful Join stored.
type JoinResult struct {
	// Config is cfg with the mesh's settings adopted, as saved in the
	// state directory: run the node with it.
	Config  Config
	Mesh    string     // the mesh's name
	Name    string     // this node's name
	Addr    netip.Addr // this node's overlay address
	Members int        // members the admitting node knew
}

// Why a Join failed. Every error Join returns wraps at most one of these
// (test with errors.Is) together with a detail that names the peer, such as
// "join via 192.0.2.1:51821: token already used: …".
//
// Only ErrUnreachable, ErrRateLimited and ErrUnavailable are worth retrying
// unchanged (Retryable). Every other failure is final: the token, the name,
// the peer or the state directory must change first. A token the admitting
// node spent on this identity and name is not spent for them: after a lost
// answer, or a state directory that could not be written, the same join
// (same seed, which Join keeps, same token, same name) is admitted again.
var (
	// ErrAlreadyEnrolled: the state directory holds a membership already.
	ErrAlreadyEnrolled = errors.New("already enrolled")
	// ErrTokenInvalid: the token is malformed (mistyped, truncated).
	ErrTokenInvalid = errors.New("join token is malformed")
	// ErrTokenUnknown: the admitting node never issued the token.
	ErrTokenUnknown = errors.New("token unknown")
	// ErrTokenExpired: the token's time ran out before it was used.
	ErrTokenExpired = errors.New("token expired")
	// ErrTokenUsed: the token was redeemed before (tokens are one-time).
	ErrTokenUsed = errors.New("token already used")
	// ErrWrongCA: the peer is not a member of the mesh the token is for.
	ErrWrongCA = errors.New("peer belongs to another mesh")
	// ErrNameTaken: another member holds the name.
	ErrNameTaken = errors.New("name taken")
	// ErrKeyTaken: this node's WireGuard key or identity is already a
	// member's (a copied state directory or seed).
	ErrKeyTaken = errors.New("key already in use")
	// ErrRevoked: this identity has been revoked from the mesh.
	ErrRevoked = errors.New("identity revoked")
	// ErrNotAdmin: the peer does not hold the mesh CA: join through a
	// member that does. (Peers of earlier builds also named an admin.)
	ErrNotAdmin = errors.New("peer cannot admit members")
	// ErrRefused: the peer refused the request for another reason (a
	// malformed or unsigned request: a bug, or a protocol version the peer
	// does not speak).
	ErrRefused = errors.New("refused")
	// ErrRateLimited: the peer refused too many requests from this address
	// lately and asks it to wait.
	ErrRateLimited = errors.New("rate limited")
	// ErrUnavailable: the peer failed on its side (5xx).
	ErrUnavailable = errors.New("peer unavailable")
	// ErrUnreachable: no answer came: the dial failed, the connection was
	// refused or broke, or the exchange timed out.
	ErrUnreachable = errors.New("unreachable")
)

// Retryable reports whether the same Join may succeed later with nothing
// changed: the peer was unreachable, rate limited this address, or failed
// on its side. A Join stopped by its ctx is neither: check ctx.
func Retryable(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, ErrRateLimited) || errors.Is(err, ErrUnavailable)
}

// joinTimeout bounds the exchange with the admitting node (a variable for
// tests).
var joinTimeout = 30 * time.Second

// Join enrolls cfg.StateDir through the member at req.Peer and stores the
// membership: seed, CA certificate, ticket, node certificate, route secret,
// the admitting node's member table, and cfg with the mesh's gossip port
// bootstrap_expect and member validity adopted. The seed is written before
// the peer is asked, and nothing else unless the peer admits this node and
// its answer verifies: a join whose answer was lost (a timeout, a reset, a
// crash between sending and receiving) is retried with the same seed and
// the same token, and the admitting node, which redeemed the token for
// this identity, admits it again. A seed already in the directory (an
// appliance's first boot, a retried join) is reused.
func Join(ctx context.Context, cfg Config, req JoinRequest) (*JoinResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir := cfg.StateDir
	if _, err := os.Stat(dir.TicketPath()); err == nil {
		return nil, &joinError{kind: ErrAlreadyEnrolled,
			err: fmt.Errorf("%s is already enrolled (%s exists): run meshnode up --state %s", dir, dir.TicketPath(), dir)}
	}
	if _, err := identity.ParseInvite(req.Token); err != nil {
		return nil, &joinError{kind: ErrTokenInvalid, err: err}
	}
	if err := identity.ValidateName(req.Name); err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	if req.Peer == "" {
		return nil, errors.New("no peer to join through")
	}
	peer := withDefaultPort(req.Peer, defaults.EnrollPort)

	// The seed goes to disk before the request does: once the peer may
	// have redeemed the token for this identity, only this identity can
	// get the admission again.
	if err := dir.Ensure(); err != nil {
		return nil, err
	}
	if !dir.HasIdentity() {
		if _, err := identity.CreateSeed(dir.SeedPath()); err != nil {
			return nil, err
		}
	}
	seed, err := identity.LoadSeed(dir.SeedPath())
	if err != nil {
		return nil, err
	}
	id := identity.FromSeed(seed)
	eps, err := cfg.ParseEndpoints()
	if err != nil {
		return nil, err
	}
	if len(eps) == 0 {
		eps = LocalEndpoints(cfg.ListenPort, cfg.Interface)
	}

	ectx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	res, err := enroll.Join(ectx, peer, req.Token, id, req.Name, eps)
	if err != nil {
		je := &joinError{peer: peer, err: err}
		if ctx.Err() == nil { // the caller stopping is no failure of the peer's
			je.kind = joinErrorKind(err)
		}
		return nil, je
	}
	if p := res.Mesh.GossipPort; p > 0 && p <= 65535 {
		cfg.GossipPort = p
	}
	if e := res.Mesh.BootstrapExpect; e > 0 && !req.KeepBootstrapExpect {
		cfg.BootstrapExpect = e
	}
	if v := res.Mesh.MemberValidity(); identity.CheckMemberValidity(v) == nil && v > 0 {
		cfg.MemberValidity = v
	}
	if mc := res.Mesh.MaxCore; mc > 0 {
		cfg.MaxCore = mc
	}
	// A lab mesh stays one: its members advertise internal endpoints.
	cfg.LabEndpoints = cfg.LabEndpoints || res.Mesh.LabEndpoints

	// Admitted: the token is spent for everyone but this identity, so a
	// failure says how to retry.
	stored := func(err error) error {
		return &joinError{peer: peer, err: fmt.Errorf("admitted, but storing the membership failed (retry with the same token once fixed): %w", err)}
	}
	m, err := dir.SaveEnrollment(id, res.Enrollment, time.Now())
	if err != nil {
		return nil, stored(err)
	}
	if err := discovery.WriteMembers(dir.MembersPath(), res.Members); err != nil {
		return nil, stored(err)
	}
	if err := SaveConfig(cfg); err != nil {
		return nil, stored(err)
	}
	return &JoinResult{Config: cfg, Mesh: m.Trust.Mesh, Name: m.Ticket.Name, Addr: m.Ticket.Addr, Members: len(res.Members)}, nil
}

// joinErrorKind maps what enroll.Join returned to one of the Err* kinds
// (nil: none fits). The peer's stable code decides; the HTTP status only
// when the code is one this build does not know.
func joinErrorKind(err error) error {
	if errors.Is(err, enroll.ErrWrongCA) {
		return ErrWrongCA
	}
	var ee *enroll.Error
	if !errors.As(err, &ee) {
		return nil // an answer that does not verify
	}
	if ee.Status == 0 {
		return ErrUnreachable
	}
	switch ee.Code {
	case enroll.CodeTokenUnknown:
		return ErrTokenUnknown
	case enroll.CodeTokenExpired:
		return ErrTokenExpired
	case enroll.CodeTokenUsed:
		return ErrTokenUsed
	case enroll.CodeTokenMesh:
		return ErrWrongCA
	case enroll.CodeNameTaken:
		return ErrNameTaken
	case enroll.CodeKeyTaken:
		return ErrKeyTaken
	case enroll.CodeRevoked:
		return ErrRevoked
	case enroll.CodeNoCA:
		return ErrNotAdmin
	case enroll.CodeRateLimited:
		return ErrRateLimited
	case enroll.CodeUnavailable, enroll.CodeInternalError:
		return ErrUnavailable
	}
	switch {
	case ee.Status == 429:
		return ErrRateLimited
	case ee.Status >= 500:
		return ErrUnavailable
	}
	return ErrRefused
}

// joinError is every error of Join: a kind for errors.Is, the peer, and
// the detail (also reachable by errors.Is and errors.As, e.g. for the
// *enroll.Error with the admin member's endpoints).
type joinError struct {
	kind error  // one of the Err* kinds; nil if none fits
	peer string // host:port asked; "" when Join failed before asking
	err  error
}

func (e *joinError) Error() string {
	switch {
	case e.peer == "":
		return e.err.Error()
	case e.kind == nil:
		return fmt.Sprintf("join via %s: %s", e.peer, joinDetail(e.err))
	}
	return fmt.Sprintf("join via %s: %v: %s", e.peer, e.kind, joinDetail(e.err))
}

func (e *joinError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

// joinDetail is err without the peer, which the join error names already.
func joinDetail(err error) string {
	var ee *enroll.Error
	if !errors.As(err, &ee) {
		return err.Error()
	}
	if ee.Status == 0 {
		return ee.Err.Error()
	}
	s := fmt.Sprintf("%s (%d %s)", ee.Message, ee.Status, ee.Code)
	if ee.Admin != "" && !strings.Contains(s, ee.Admin) {
		s += fmt.Sprintf(" (admin member %q)", ee.Admin)
	}
	if len(ee.AdminEndpoints) > 0 {
		s += fmt.Sprintf(" (admin endpoints %v)", ee.AdminEndpoints)
	}
	return s
}

// withDefaultPort adds port to a host without one (IPv6 literals included).
func withDefaultPort(hostport string, port int) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	return net.JoinHostPort(strings.Trim(hostport, "[]"), strconv.Itoa(port))
}
