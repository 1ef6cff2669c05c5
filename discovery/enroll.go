package discovery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// The enrollment endpoint speaks JSON over HTTPS on the underlay:
//
//	POST /v1/join       a newcomer with a one-time token asks to be admitted
//	GET  /v1/challenge  a fresh challenge for hello
//	POST /v1/hello      a known member re-introduces itself (signed challenge)
//
// The newcomer holds only the CA fingerprint from its token, so the server
// presents its node certificate with the CA certificate as chain; the
// client pins the CA by fingerprint and verifies the leaf against it.
const (
	// DefaultEnrollPort is the underlay TCP port of the enrollment endpoint.
	DefaultEnrollPort = 51821

	joinDomain    = "meshnode join v1"
	helloDomain   = "meshnode hello v1"
	enrollVersion = 1

	maxRequestBody  = 16 << 10
	maxResponseBody = 4 << 20
	challengeSize   = 32
)

// joinRequest is what a newcomer sends. Signature is its identity's
// signature over signedJoin, which binds the WireGuard key (the CA cannot
// derive it from the identity key) and the endpoints to the token.
type joinRequest struct {
	Version   int                      `json:"version"`
	Name      string                   `json:"name"`
	Node      identity.NodePublic      `json:"node"`
	WireGuard identity.WireGuardPublic `json:"wireguard"`
	Endpoints []netip.AddrPort         `json:"endpoints"`
	Token     string                   `json:"token"`
	Signature []byte                   `json:"signature"`
}

func appendEndpoints(b []byte, eps []netip.AddrPort) []byte {
	b = append(b, byte(len(eps)))
	for _, ep := range eps {
		a := ep.Addr().As16()
		b = append(b, a[:]...)
		b = binary.BigEndian.AppendUint16(b, ep.Port())
	}
	return b
}

// signedJoin is "meshnode join v1" || name_len u8 | name | identity [32] |
// wireguard [32] | n u8 | n × (addr [16] | port u16) | SHA-256(token).
func (r *joinRequest) signed() []byte {
	b := []byte(joinDomain)
	b = append(b, byte(len(r.Name)))
	b = append(b, r.Name...)
	b = append(b, r.Node[:]...)
	b = append(b, r.WireGuard[:]...)
	b = appendEndpoints(b, r.Endpoints)
	h := sha256.Sum256([]byte(r.Token))
	return append(b, h[:]...)
}

// helloRequest is what a known member sends to be let back in.
type helloRequest struct {
	Version   int              `json:"version"`
	Ticket    []byte           `json:"ticket"`
	Endpoints []netip.AddrPort `json:"endpoints"`
	Challenge []byte           `json:"challenge"`
	Signature []byte           `json:"signature"`
}

// signed is "meshnode hello v1" || challenge [32] | ticket_len u8 |
// ticket | n u8 | n × (addr [16] | port u16).
func (r *helloRequest) signed() []byte {
	b := []byte(helloDomain)
	b = append(b, r.Challenge...)
	b = append(b, byte(len(r.Ticket)))
	b = append(b, r.Ticket...)
	return appendEndpoints(b, r.Endpoints)
}

// MeshParams are the mesh-wide settings a newcomer needs.
type MeshParams struct {
	Name       string       `json:"name"`
	Prefix     netip.Prefix `json:"prefix"`
	GossipPort int          `json:"gossip_port"`
	MTU        int          `json:"mtu"`
	// BootstrapExpect is the mesh's JetStream bootstrap_expect, so that a
	// newcomer waits for the same number of members as the rest (0: not
	// set by the admitting node).
	BootstrapExpect int `json:"bootstrap_expect,omitempty"`
}

type joinResponse struct {
	CACert      string     `json:"ca_cert"`
	Ticket      []byte     `json:"ticket"`
	NodeCert    string     `json:"node_cert"`
	RouteSecret string     `json:"route_secret"`
	Mesh        MeshParams `json:"mesh"`
	Members     []record   `json:"members"`
}

type challengeResponse struct {
	Challenge []byte `json:"challenge"`
}

type helloResponse struct {
	Members []record `json:"members"`
}

// errorResponse is every 4xx answer.
type errorResponse struct {
	Error string     `json:"error"`
	Code  string     `json:"code"`
	Admin *adminHint `json:"admin,omitempty"`
}

type adminHint struct {
	Name      string           `json:"name"`
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
}

// Error codes of the enrollment endpoint.
const (
	CodeMalformed     = "malformed"
	CodeTooLarge      = "too-large"
	CodeBadSignature  = "bad-signature"
	CodeNoCA          = "no-ca"
	CodeTokenUnknown  = "token-unknown"
	CodeTokenExpired  = "token-expired"
	CodeTokenUsed     = "token-used"
	CodeTokenMesh     = "token-wrong-mesh"
	CodeRevoked       = "revoked"
	CodeNameTaken     = "name-taken"
	CodeBadTicket     = "bad-ticket"
	CodeBadChallenge  = "bad-challenge"
	CodeRateLimited   = "rate-limited"
	CodeMethod        = "method-not-allowed"
	CodeNotFound      = "not-found"
	CodeUnavailable   = "unavailable"
	CodeInternalError = "internal"
)

// EnrollError is a refusal from an enrollment endpoint.
type EnrollError struct {
	Peer    string
	Status  int
	Code    string
	Message string
	// Admin names a member holding the CA when this one does not.
	Admin          string
	AdminEndpoints []netip.AddrPort
}

func (e *EnrollError) Error() string {
	s := fmt.Sprintf("enrollment at %s refused (%d %s): %s", e.Peer, e.Status, e.Code, e.Message)
	if e.Admin != "" && !strings.Contains(s, e.Admin) {
		s += fmt.Sprintf(" (admin member %q)", e.Admin)
	}
	if len(e.AdminEndpoints) > 0 {
		s += fmt.Sprintf(" (admin endpoints %v)", e.AdminEndpoints)
	}
	return s
}

// ErrWrongCA means the endpoint's CA is not the one the token pins.
var ErrWrongCA = errors.New("the peer's mesh CA does not match the token's fingerprint")

// EnrollResult is what a newcomer receives.
type EnrollResult struct {
	Enrollment *identity.Enrollment
	Mesh       MeshParams
	// Members are the admitting node's member table, verified against the
	// mesh CA: write them with WriteMembers before the first Start.
	Members []Member
}

// Enroll asks the enrollment endpoint at peer (host[:port], default port
// 51821) to admit this identity under name with a one-time token.
func Enroll(ctx context.Context, peer, token string, id *identity.Identity, name string, endpoints []netip.AddrPort) (*EnrollResult, error) {
	iv, err := identity.ParseInvite(token)
	if err != nil {
		return nil, err
	}
	if err := identity.ValidateName(name); err != nil {
		return nil, err
	}
	if err := checkEndpoints(endpoints); err != nil {
		return nil, err
	}
	req := joinRequest{Version: enrollVersion, Name: name, Node: id.Public(), WireGuard: id.WireGuardPublic(), Endpoints: endpoints, Token: token}
	req.Signature = id.Sign(req.signed())
	var resp joinResponse
	c := newClient(peer, pinnedCA(iv.CAFingerprint))
	if err := c.do(ctx, http.MethodPost, "/v1/join", req, &resp); err != nil {
		return nil, err
	}
	e := &identity.Enrollment{CACertPEM: []byte(resp.CACert), Ticket: resp.Ticket, NodeCertPEM: []byte(resp.NodeCert), RouteSecret: resp.RouteSecret}
	now := time.Now()
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
	members, err := verifyRecords(resp.Members, trust, now)
	if err != nil {
		return nil, fmt.Errorf("enrollment from %s: %w", c.peer, err)
	}
	return &EnrollResult{Enrollment: e, Mesh: resp.Mesh, Members: members}, nil
}

// Hello re-introduces a known member to the endpoint at peer, proving its
// identity with a signature over a fresh challenge, so that the peer adds
// it as a WireGuard peer again. It returns the peer's member table.
func Hello(ctx context.Context, peer string, m *identity.Member, endpoints []netip.AddrPort) ([]Member, error) {
	if err := checkEndpoints(endpoints); err != nil {
		return nil, err
	}
	c := newClient(peer, verifyAgainst(m.Trust.Pool()))
	var ch challengeResponse
	if err := c.do(ctx, http.MethodGet, "/v1/challenge", nil, &ch); err != nil {
		return nil, err
	}
	req := helloRequest{Version: enrollVersion, Ticket: m.Ticket.Marshal(), Endpoints: endpoints, Challenge: ch.Challenge}
	req.Signature = m.ID.Sign(req.signed())
	var resp helloResponse
	if err := c.do(ctx, http.MethodPost, "/v1/hello", req, &resp); err != nil {
		return nil, err
	}
	members, err := verifyRecords(resp.Members, m.Trust, time.Now())
	if err != nil {
		return nil, fmt.Errorf("hello to %s: %w", c.peer, err)
	}
	return members, nil
}

// verifyRecords checks every member record against the mesh CA; a record
// that does not verify makes the whole answer suspect.
func verifyRecords(recs []record, trust *identity.Trust, now time.Time) ([]Member, error) {
	var out []Member
	for i, r := range recs {
		m, err := verifyRecord(r, trust, nil, now)
		if err != nil {
			return nil, fmt.Errorf("member %d: %w", i, err)
		}
		m.Self = false
		out = append(out, m)
	}
	return out, nil
}

// pinnedCA accepts a chain whose last certificate has the pinned SHA-256
// fingerprint and whose leaf that certificate signed.
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
		return verifyLeaf(certs[0], pool)
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
	return net.JoinHostPort(strings.Trim(peer, "[]"), strconv.Itoa(DefaultEnrollPort))
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
		return fmt.Errorf("enrollment endpoint %s: %w", c.peer, err)
	}
	defer resp.Body.Close()
	defer c.http.CloseIdleConnections()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return fmt.Errorf("enrollment endpoint %s: %w", c.peer, err)
	}
	if len(data) > maxResponseBody {
		return fmt.Errorf("enrollment endpoint %s: answer larger than %d bytes", c.peer, maxResponseBody)
	}
	if resp.StatusCode != http.StatusOK {
		var er errorResponse
		_ = json.Unmarshal(data, &er)
		e := &EnrollError{Peer: c.peer, Status: resp.StatusCode, Code: er.Code, Message: er.Error}
		if er.Admin != nil {
			e.Admin, e.AdminEndpoints = er.Admin.Name, er.Admin.Endpoints
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
