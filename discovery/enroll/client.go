package enroll

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
)

// The newcomer holds only the CA fingerprint from its token, so the server
// presents its node certificate with the CA certificate as chain; the
// client pins the CA by fingerprint and verifies the leaf against it.

// Error is an enrollment request the peer did not grant. Either the peer
// answered with a refusal (Status and Code set, Code one of the Code*
// constants) or no answer came at all (Status 0, and Err says why: the
// dial, the TLS handshake, a timeout).
type Error struct {
	Peer    string
	Status  int
	Code    string
	Message string
	// Admin names a member holding the CA when this one does not.
	Admin          string
	AdminEndpoints []netip.AddrPort
	// Revocation is the record a CodeRevoked refusal carried, parsed but
	// not verified: see Revoked.
	Revocation *identity.Revocation
	Err        error
}

// Revoked returns the CA-signed revocation of m's own identity that a
// refusal (anywhere in err's chain) carried, verified against m's mesh
// CA; false when err is no such refusal or the record does not verify
// or names another identity.
func Revoked(err error, m *identity.Member) (*identity.Revocation, bool) {
	var ee *Error
	if !errors.As(err, &ee) || ee.Code != CodeRevoked || ee.Revocation == nil {
		return nil, false
	}
	r := ee.Revocation
	if r.Node != m.ID.Public() || r.Verify(m.Trust) != nil {
		return nil, false
	}
	return r, true
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("enrollment endpoint %s: %v", e.Peer, e.Err)
	}
	s := fmt.Sprintf("enrollment at %s refused (%d %s): %s", e.Peer, e.Status, e.Code, e.Message)
	if e.Admin != "" && !strings.Contains(s, e.Admin) {
		s += fmt.Sprintf(" (admin member %q)", e.Admin)
	}
	if len(e.AdminEndpoints) > 0 {
		s += fmt.Sprintf(" (admin endpoints %v)", e.AdminEndpoints)
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// ErrWrongCA means the endpoint's CA is not the one the token pins.
var ErrWrongCA = errors.New("the peer's mesh CA does not match the token's fingerprint")

// JoinResult is what a newcomer receives.
type JoinResult struct {
	Enrollment *identity.Enrollment
	Mesh       MeshParams
	// Members are the admitting node's member table, verified against the
	// mesh CA: write them with discovery.WriteMembers before the first
	// Start.
	Members []discovery.Member
}

// Join asks the enrollment endpoint at peer (host[:port], default port
// 51821) to admit this identity under name with a one-time token. The
// answer is verified (CA against the token, ticket and certificate against
// the identity, every member record against the CA) before it is returned.
func Join(ctx context.Context, peer, token string, id *identity.Identity, name string, endpoints []netip.AddrPort) (*JoinResult, error) {
	iv, err := identity.ParseInvite(token)
	if err != nil {
		return nil, err
	}
	if err := identity.ValidateName(name); err != nil {
		return nil, err
	}
	if err := discovery.CheckEndpoints(endpoints); err != nil {
		return nil, err
	}
	var chain peerChain
	c := newClient(peer, chain.wrap(pinnedCA(iv.CAFingerprint)))
	now := time.Now()
	admitter, err := admitterKey(ctx, c, &chain, now)
	if err != nil {
		return nil, err
	}
	req := joinRequest{Version: joinVersion, Name: name, Node: id.Public(), WireGuard: id.WireGuardPublic(), Endpoints: endpoints, Token: token}
	req.Signature = id.Sign(req.signed())
	if req.WireGuardProof, err = id.WireGuardProof(admitter, joinProofDomain, req.signed()); err != nil {
		return nil, fmt.Errorf("enrollment endpoint %s: %w", c.peer, err)
	}
	var resp joinResponse
	if err := c.do(ctx, http.MethodPost, "/v2/join", req, &resp); err != nil {
		return nil, err
	}
	e := &identity.Enrollment{CACertPEM: []byte(resp.CACert), Ticket: resp.Ticket, NodeCertPEM: []byte(resp.NodeCert), RouteSecret: resp.RouteSecret}
	trust, err := identity.ParseTrust(e.CACertPEM)
	if err != nil {
		return nil, fmt.Errorf("enrollment from %s: %w", c.peer, err)
	}
	if trust.Fingerprint() != iv.CAFingerprint {
		return nil, fmt.Errorf("enrollment from %s: %w", c.peer, ErrWrongCA)
	}
	t, err := identity.ParseTicket(e.Ticket)
	if err != nil {
		return nil, fmt.Errorf("enrollment from %s: %w", c.peer, err)
	}
	if err := id.CheckOwn(t, trust, now); err != nil {
		return nil, fmt.Errorf("enrollment from %s: %w", c.peer, err)
	}
	if t.Name != name {
		return nil, fmt.Errorf("enrollment from %s: ticket names %q, asked for %q", c.peer, t.Name, name)
	}
	nc, err := identity.ParseNodeCert(e.NodeCertPEM, trust, now)
	if err != nil {
		return nil, fmt.Errorf("enrollment from %s: %w", c.peer, err)
	}
	if nc.Node() != id.Public() {
		return nil, fmt.Errorf("enrollment from %s: node certificate names another identity", c.peer)
	}
	if e.RouteSecret == "" {
		return nil, fmt.Errorf("enrollment from %s: no route secret", c.peer)
	}
	members, err := discovery.DecodeRecords(resp.Members, trust, now)
	if err != nil {
		return nil, fmt.Errorf("enrollment from %s: %w", c.peer, err)
	}
	return &JoinResult{Enrollment: e, Mesh: resp.Mesh, Members: members}, nil
}

// Hello re-introduces a known member to the endpoint at peer, proving its
// identity with a signature over a fresh challenge, so that the peer adds
// it as a WireGuard peer again. It returns the peer's member table.
func Hello(ctx context.Context, peer string, m *identity.Member, endpoints []netip.AddrPort) ([]discovery.Member, error) {
	if err := discovery.CheckEndpoints(endpoints); err != nil {
		return nil, err
	}
	c := newClient(peer, verifyAgainst(m.Trust.Pool()))
	var ch challengeResponse
	if err := c.do(ctx, http.MethodGet, "/v1/challenge", nil, &ch); err != nil {
		return nil, err
	}
	req := helloRequest{Version: version, Ticket: m.Ticket.Marshal(), Endpoints: endpoints, Challenge: ch.Challenge}
	req.Signature = m.ID.Sign(req.signed())
	var resp helloResponse
	if err := c.do(ctx, http.MethodPost, "/v1/hello", req, &resp); err != nil {
		return nil, err
	}
	members, err := discovery.DecodeRecords(resp.Members, m.Trust, time.Now())
	if err != nil {
		return nil, fmt.Errorf("hello to %s: %w", c.peer, err)
	}
	return members, nil
}

// GossipKey is the mesh's current gossip key as a member's endpoint
// handed it out: nil Notice means the peer knows of no rotation (epoch 0).
type GossipKey struct {
	Notice *identity.GossipKeyNotice
	Key    [identity.GossipKeySize]byte
}

// FetchGossipKey asks the endpoint at peer for the mesh's current gossip
// key, proving m's identity over a fresh challenge (like Hello). The
// notice is verified against m's mesh CA and the key against the notice's
// key id before it is returned.
func FetchGossipKey(ctx context.Context, peer string, m *identity.Member) (*GossipKey, error) {
	c := newClient(peer, verifyAgainst(m.Trust.Pool()))
	var ch challengeResponse
	if err := c.do(ctx, http.MethodGet, "/v1/challenge", nil, &ch); err != nil {
		return nil, err
	}
	req := gossipKeyRequest{Version: version, Ticket: m.Ticket.Marshal(), Challenge: ch.Challenge}
	req.Signature = m.ID.Sign(req.signed())
	var resp gossipKeyResponse
	if err := c.do(ctx, http.MethodPost, "/v1/gossip-key", req, &resp); err != nil {
		return nil, err
	}
	if resp.Epoch == 0 && len(resp.Notice) == 0 {
		return &GossipKey{}, nil
	}
	n, err := identity.ParseGossipKeyNotice(resp.Notice)
	if err != nil {
		return nil, fmt.Errorf("gossip key from %s: %w", c.peer, err)
	}
	if err := n.Verify(m.Trust); err != nil {
		return nil, fmt.Errorf("gossip key from %s: %w", c.peer, err)
	}
	if n.Epoch != resp.Epoch || len(resp.Key) != identity.GossipKeySize {
		return nil, fmt.Errorf("gossip key from %s: epoch %d with a notice for %d, or a %d-byte key", c.peer, resp.Epoch, n.Epoch, len(resp.Key))
	}
	k := GossipKey{Notice: n, Key: [identity.GossipKeySize]byte(resp.Key)}
	if identity.GossipKeyID(k.Key) != n.KeyID {
		return nil, fmt.Errorf("gossip key from %s (epoch %d): %w", c.peer, n.Epoch, identity.ErrGossipKeyMismatch)
	}
	return &k, nil
}

// pinnedCA accepts a chain whose last certificate has the pinned SHA-256
// fingerprint and whose leaf that certificate signed. Every failure is
// ErrWrongCA: the peer is not (only) a member of the token's mesh.
func pinnedCA(fp [32]byte) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		certs := cs.PeerCertificates
		if len(certs) < 2 {
			return fmt.Errorf("%w: the peer sent no CA certificate", ErrWrongCA)
		}
		ca := certs[len(certs)-1]
		if sha256.Sum256(ca.Raw) != fp {
			return ErrWrongCA
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		if err := verifyLeaf(certs[0], pool); err != nil {
			return fmt.Errorf("%w: %v", ErrWrongCA, err)
		}
		return nil
	}
}

// verifyAgainst accepts a leaf signed by the mesh CA. Peers are dialled by
// underlay address, which no certificate names: the CA is what matters.
func verifyAgainst(pool *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the peer sent no certificate")
		}
		return verifyLeaf(cs.PeerCertificates[0], pool)
	}
}

func verifyLeaf(leaf *x509.Certificate, pool *x509.CertPool) error {
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	return nil
}

type client struct {
	peer string
	http *http.Client
}

// peerAddr adds the default port to a bare host or address.
func peerAddr(peer string) string {
	if _, _, err := net.SplitHostPort(peer); err == nil {
		return peer
	}
	return net.JoinHostPort(strings.Trim(peer, "[]"), strconv.Itoa(DefaultPort))
}

func newClient(peer string, verify func(tls.ConnectionState) error) *client {
	tc := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is verified by VerifyConnection against the pinned
		// or held CA; there is no host name to check.
		InsecureSkipVerify: true,
		VerifyConnection:   verify,
	}
	return &client{
		peer: peerAddr(peer),
		http: &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: false}},
	}
}

// do sends one request. A request that got no answer is an *Error with
// Status 0 (so that callers can tell "unreachable" from "refused"), a
// refusal an *Error with the peer's status and code.
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+c.peer+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL names the peer again; the cause is what matters.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &Error{Peer: c.peer, Err: err}
	}
	defer resp.Body.Close()
	defer c.http.CloseIdleConnections()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return &Error{Peer: c.peer, Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if len(data) > maxResponseBody {
		return fmt.Errorf("enrollment endpoint %s: answer larger than %d bytes", c.peer, maxResponseBody)
	}
	if resp.StatusCode != http.StatusOK {
		var er errorResponse
		_ = json.Unmarshal(data, &er)
		e := &Error{Peer: c.peer, Status: resp.StatusCode, Code: er.Code, Message: er.Error}
		if er.Admin != nil {
			e.Admin, e.AdminEndpoints = er.Admin.Name, er.Admin.Endpoints
		}
		if len(er.Revocation) > 0 {
			e.Revocation, _ = identity.ParseRevocation(er.Revocation)
		}
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
		return e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("enrollment endpoint %s: bad answer: %w", c.peer, err)
	}
	return nil
}

// Renewal is a renewed ticket and node certificate, verified against the
// member that asked, and the mesh settings of the admin that issued them.
type Renewal struct {
	Ticket      []byte
	NodeCertPEM []byte
	Mesh        MeshParams
	// Members are the admin's member table, verified against the mesh CA
	// (discovery.Discovery.Learn takes them).
	Members []discovery.Member
}

// Renew asks the admin's enrollment endpoint at peer for a fresh ticket
// and node certificate for m, proving m's identity over a challenge. m's
// ticket may have expired (within RenewGrace). The answer is verified: CA
// signature, valid now, this identity, WireGuard key and name.
func Renew(ctx context.Context, peer string, m *identity.Member, endpoints []netip.AddrPort) (*Renewal, error) {
	if err := discovery.CheckEndpoints(endpoints); err != nil {
		return nil, err
	}
	c := newClient(peer, verifyAgainst(m.Trust.Pool()))
	var ch challengeResponse
	if err := c.do(ctx, http.MethodGet, "/v1/challenge", nil, &ch); err != nil {
		return nil, err
	}
	req := renewRequest{Version: version, Ticket: m.Ticket.Marshal(), Endpoints: endpoints, Challenge: ch.Challenge}
	req.Signature = m.ID.Sign(req.signed())
	var resp renewResponse
	if err := c.do(ctx, http.MethodPost, "/v1/renew", req, &resp); err != nil {
		return nil, err
	}
	now := time.Now()
	t, err := identity.ParseTicket(resp.Ticket)
	if err != nil {
		return nil, fmt.Errorf("renewal from %s: %w", c.peer, err)
	}
	if err := m.ID.CheckOwn(t, m.Trust, now); err != nil {
		return nil, fmt.Errorf("renewal from %s: %w", c.peer, err)
	}
	if t.Name != m.Ticket.Name {
		return nil, fmt.Errorf("renewal from %s: ticket names %q, this node is %q", c.peer, t.Name, m.Ticket.Name)
	}
	nc, err := identity.ParseNodeCert([]byte(resp.NodeCert), m.Trust, now)
	if err != nil {
		return nil, fmt.Errorf("renewal from %s: %w", c.peer, err)
	}
	if nc.Node() != m.ID.Public() {
		return nil, fmt.Errorf("renewal from %s: node certificate names another identity", c.peer)
	}
	members, err := discovery.DecodeRecords(resp.Members, m.Trust, now)
	if err != nil {
		return nil, fmt.Errorf("renewal from %s: %w", c.peer, err)
	}
	return &Renewal{Ticket: resp.Ticket, NodeCertPEM: []byte(resp.NodeCert), Mesh: resp.Mesh, Members: members}, nil
}
