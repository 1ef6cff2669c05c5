package enroll

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// Wire format: JSON over HTTPS on the underlay.
//
//	GET  /v2/ticket     the admitting node's own ticket, for the join proof
//	POST /v2/join       a newcomer with a one-time token asks to be admitted
//	GET  /v1/challenge  a fresh challenge for hello
//	POST /v1/hello      a known member re-introduces itself (signed challenge)
//	POST /v1/renew      a member asks an admin for a fresh ticket and node
//	                    certificate (signed challenge, like hello)
//	POST /v1/gossip-key a member asks for the mesh's current gossip key
//	                    (signed challenge, like hello): the key of the
//	                    newest epoch with its CA-signed notice
//
// The version is explicit three times: in the path, in every request's
// "version" field, and in the domain of every signature. Requests are
// decoded strictly (an unknown field is refused); answers are decoded
// leniently, so an answer may gain fields, or lose ones no client reads,
// without a new version. Anything else (a changed meaning, a changed
// signature) is a new version: new path, new version, new domains.
//
// Join is v2: a v1 join proved the identity key only, so a newcomer could
// name another member's WireGuard key and be issued a ticket for it. A v2
// join also carries a WireGuardProof (identity.WireGuardProof) toward the
// admitting node's WireGuard key, which the newcomer reads from GET
// /v2/ticket first, verified against the pinned CA and the TLS peer. A v1
// join is refused with CodeVersion and a message that says to upgrade.
const (
	// DefaultPort is the underlay TCP port of the enrollment endpoint.
	DefaultPort = defaults.EnrollPort

	joinDomain      = "meshnode join v2"
	joinProofDomain = "meshnode join v2 wireguard proof"
	joinVersion     = 2
	helloDomain     = "meshnode hello v1"
	renewDomain     = "meshnode renew v1"
	gossipKeyDomain = "meshnode gossip key v1"
	version         = 1

	maxRequestBody  = 16 << 10
	maxResponseBody = 4 << 20
	challengeSize   = 32
	maxTokenLength  = 200
)

// joinRequest is what a newcomer sends. Signature is its identity's
// signature over signed(), which binds the WireGuard key (the CA cannot
// derive it from the identity key) and the endpoints to the token.
// WireGuardProof is identity.WireGuardProof over the same bytes toward the
// admitting node's WireGuard key (domain joinProofDomain): the newcomer
// holds the private half of the key it asks a ticket for.
type joinRequest struct {
	Version        int                      `json:"version"`
	Name           string                   `json:"name"`
	Node           identity.NodePublic      `json:"node"`
	WireGuard      identity.WireGuardPublic `json:"wireguard"`
	Endpoints      []netip.AddrPort         `json:"endpoints"`
	Token          string                   `json:"token"`
	Signature      []byte                   `json:"signature"`
	WireGuardProof []byte                   `json:"wireguard_proof"`
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

// signed is "meshnode join v2" || name_len u8 | name | identity [32] |
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

// renewRequest is what a member sends to an admin to renew its ticket and
// node certificate. Ticket is its current one, which may have expired (up
// to RenewGrace ago): the CA signature and the identity's signature over a
// fresh challenge are what admit it, not the ticket's time.
type renewRequest struct {
	Version   int              `json:"version"`
	Ticket    []byte           `json:"ticket"`
	Endpoints []netip.AddrPort `json:"endpoints"`
	Challenge []byte           `json:"challenge"`
	Signature []byte           `json:"signature"`
}

// signed is "meshnode renew v1" || challenge [32] | ticket_len u8 |
// ticket | n u8 | n × (addr [16] | port u16): hello's layout under its own
// domain, so that neither signature can stand for the other.
func (r *renewRequest) signed() []byte {
	b := []byte(renewDomain)
	b = append(b, r.Challenge...)
	b = append(b, byte(len(r.Ticket)))
	b = append(b, r.Ticket...)
	return appendEndpoints(b, r.Endpoints)
}

// gossipKeyRequest is what a member sends for the current gossip key.
type gossipKeyRequest struct {
	Version   int    `json:"version"`
	Ticket    []byte `json:"ticket"`
	Challenge []byte `json:"challenge"`
	Signature []byte `json:"signature"`
}

// signed is "meshnode gossip key v1" || challenge [32] | ticket_len u8 |
// ticket: hello's layout without endpoints, under its own domain.
func (r *gossipKeyRequest) signed() []byte {
	b := []byte(gossipKeyDomain)
	b = append(b, r.Challenge...)
	b = append(b, byte(len(r.Ticket)))
	return append(b, r.Ticket...)
}

// gossipKeyResponse is the newest rotated gossip key the endpoint holds
// and its notice (identity.GossipKeyNotice); both empty when the mesh
// never rotated (every member derives epoch 0).
type gossipKeyResponse struct {
	Epoch  uint32 `json:"epoch"`
	Notice []byte `json:"notice,omitempty"`
	Key    []byte `json:"key,omitempty"`
}

// renewResponse carries the renewed credentials and the mesh's settings
// as the admin knows them (a renewing member adopts the member validity).
type renewResponse struct {
	Ticket   []byte     `json:"ticket"`
	NodeCert string     `json:"node_cert"`
	Mesh     MeshParams `json:"mesh"`
	// Members are the admin's signed member records, the caller excluded:
	// a node that was away long enough to forget its peers learns them
	// again.
	Members json.RawMessage `json:"members"`
}

// MeshParams are the mesh-wide settings a newcomer adopts. The mesh's name
// and prefix are not among them: they follow from the CA certificate the
// answer carries, and a second copy could only disagree with it. Neither is
// the MTU: it belongs to each box's underlay path, not to the mesh.
// (Answers of earlier builds also sent "name", "prefix" and "mtu"; no client
// ever read them.)
type MeshParams struct {
	// GossipPort is the memberlist port every member listens on.
	GossipPort int `json:"gossip_port"`
	// BootstrapExpect is the mesh's JetStream bootstrap_expect, so that a
	// newcomer waits for the same number of members as the rest (0: not
	// set by the admitting node).
	BootstrapExpect int `json:"bootstrap_expect,omitempty"`
	// LabEndpoints says the mesh is a lab on one host: members may
	// advertise loopback and other internal endpoints
	// (discovery.CheckDialable). A newcomer adopts it.
	LabEndpoints bool `json:"lab_endpoints,omitempty"`

	// MemberValiditySeconds is the lifetime of the mesh's tickets and
	// node certificates, so that every member knows when it must renew
	// and an admitted admin issues with the mesh's setting (0: not sent
	// by an earlier build; the default applies).
	MemberValiditySeconds int64 `json:"member_validity_s,omitempty"`

	// MaxCore is the mesh's maximum number of core members (NATS route
	// cluster and JetStream meta group; the others are leaf nodes), so
	// that an admitted admin grants the core role with the mesh's
	// setting (0: not sent by an earlier build; see Server.coreRole).
	MaxCore int `json:"max_core,omitempty"`
}

// MemberValidity is MemberValiditySeconds as a duration (0 when unset).
func (p MeshParams) MemberValidity() time.Duration {
	return time.Duration(p.MemberValiditySeconds) * time.Second
}

type joinResponse struct {
	CACert      string     `json:"ca_cert"`
	Ticket      []byte     `json:"ticket"`
	NodeCert    string     `json:"node_cert"`
	RouteSecret string     `json:"route_secret"`
	Mesh        MeshParams `json:"mesh"`
	// Members are the admitting node's signed member records
	// (discovery.EncodeRecords), the newcomer excluded.
	Members json.RawMessage `json:"members"`
}

// ticketResponse is the admitting node's own CA-signed ticket: the
// WireGuard key a joiner proves its own key toward.
type ticketResponse struct {
	Ticket []byte `json:"ticket"`
}

type challengeResponse struct {
	Challenge []byte `json:"challenge"`
}

type helloResponse struct {
	Members json.RawMessage `json:"members"`
}

// errorResponse is every refusal (4xx, and 5xx when the endpoint failed).
// Admin was filled by earlier builds on a node without the CA (an admin's
// name and underlay endpoints, told to anyone who asked); this build never
// sends it, and the client still shows it from older peers.
//
// Revocation is set with CodeRevoked when the endpoint holds the
// CA-signed record (identity.Revocation): a revoked box that was away
// learns why it is refused, verifies the record and stops, as one that
// was running does when gossip brings it.
type errorResponse struct {
	Error      string     `json:"error"`
	Code       string     `json:"code"`
	Admin      *adminHint `json:"admin,omitempty"`
	Revocation []byte     `json:"revocation,omitempty"`
}

type adminHint struct {
	Name      string           `json:"name"`
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
}

// Error codes of the enrollment endpoint: stable strings, so that a
// client decides from the code, never from the message.
const (
	CodeMalformed     = "malformed"
	CodeTooLarge      = "too-large"
	CodeBadSignature  = "bad-signature"
	CodeBadProof      = "bad-wireguard-proof"
	CodeKeyTaken      = "key-taken"
	CodeVersion       = "unsupported-version"
	CodeNoCA          = "no-ca"
	CodeTokenUnknown  = "token-unknown"
	CodeTokenExpired  = "token-expired"
	CodeTokenUsed     = "token-used"
	CodeTokenMesh     = "token-wrong-mesh"
	CodeRevoked       = "revoked"
	CodeNameTaken     = "name-taken"
	CodeBadTicket     = "bad-ticket"
	CodeBadChallenge  = "bad-challenge"
	CodeRenewTooLate  = "renew-too-late"
	CodeRateLimited   = "rate-limited"
	CodeMethod        = "method-not-allowed"
	CodeNotFound      = "not-found"
	CodeUnavailable   = "unavailable"
	CodeInternalError = "internal"
)
