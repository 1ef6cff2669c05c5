package api

import (
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// Status is what `meshnode status` shows: this node, then one entry per
// member, then the NATS route mesh.
type Status struct {
	Name          string                   `json:"name"`
	Mesh          string                   `json:"mesh"`
	Addr          netip.Addr               `json:"overlay_addr"`
	WireGuardKey  identity.WireGuardPublic `json:"wireguard_key"`
	Roles         identity.Roles           `json:"roles"`
	Interface     string                   `json:"interface"`
	ListenPort    int                      `json:"listen_port"`
	Endpoints     []netip.AddrPort         `json:"endpoints"`
	Observed      []netip.AddrPort         `json:"observed_endpoints,omitempty"` // as hubs see them (NAT mappings), advertised first
	CertExpires   time.Time                `json:"cert_expires"`
	TicketExpires time.Time                `json:"ticket_expires"`
	// CAExpires is when the mesh CA certificate runs out; it is not
	// renewed automatically, so status warns a year ahead.
	CAExpires time.Time `json:"ca_expires,omitzero"`
	// Renewal is the state of the automatic renewal of ticket and
	// certificate.
	Renewal RenewalStatus `json:"renewal,omitzero"`
	// GossipKey is the gossip keyring: which epoch seals, which open.
	GossipKey GossipKeyStatus `json:"gossip_key,omitzero"`
	// Degraded, when set, says why this node is not a full member (its
	// ticket or certificate expired): it runs only to renew.
	Degraded string         `json:"degraded,omitempty"`
	Members  []MemberStatus `json:"members"`
	// Revoked lists revoked members apart from Members: a revoked member
	// is neither dead nor a problem, it is gone on purpose.
	Revoked []Revoked  `json:"revoked,omitempty"`
	NATS    NATSStatus `json:"nats"`
	// Phones are the phones this node is a hub of; Forwarding says how it
	// carries their traffic (see mesh/wg/forward.go).
	Phones     []PhoneStatus `json:"phones,omitempty"`
	Forwarding string        `json:"forwarding,omitempty"`
	// Healthy is false when any member is not alive, a live member has no
	// recent handshake, or NATS routes are missing; Problems says which.
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
}

// MemberStatus is one line of `meshnode status`.
type MemberStatus struct {
	Name          string         `json:"name"`
	Addr          netip.Addr     `json:"overlay_addr"`
	State         State          `json:"state"`
	Roles         identity.Roles `json:"roles"`
	Path          string         `json:"path"`          // "direct <endpoint>", "relay <hub> (why)", "none (why)" or "-"
	Via           string         `json:"via,omitempty"` // the hub of a relayed path (it decrypts and re-encrypts)
	LastHandshake time.Time      `json:"last_handshake,omitzero"`
	RxBytes       int64          `json:"rx_bytes"`
	TxBytes       int64          `json:"tx_bytes"`
	// NATSClientPort is the member's NATS client port on its overlay
	// address (nats-env lists every live member's client URL).
	NATSClientPort uint16 `json:"nats_client_port,omitempty"`
}

// GossipKeyStatus is the gossip keyring. Epoch 0 is the key every member
// derives; each rotation (after a revocation) adds one.
type GossipKeyStatus struct {
	// Epoch is the newest epoch held; Primary the one gossip is sealed with.
	Epoch   uint32 `json:"epoch"`
	Primary uint32 `json:"primary"`
	// Installed are the epochs that open gossip, the primary first.
	Installed []uint32 `json:"installed"`
	// Pending is an announced epoch whose key is not fetched yet (0: none).
	Pending uint32 `json:"pending,omitempty"`
}

// RenewalStatus is the automatic renewal of the node's credentials.
type RenewalStatus struct {
	// Last is the last successful renewal in this run (zero: none yet);
	// Count counts them.
	Last  time.Time `json:"last,omitzero"`
	Count int       `json:"count"`
	// Issued is when the current ticket was issued (its start), which
	// survives restarts.
	Issued time.Time `json:"issued,omitzero"`
	// Next is when the node tries next.
	Next time.Time `json:"next,omitzero"`
	// Error is the last attempt's failure, while it keeps failing.
	Error string `json:"error,omitempty"`
	// MemberValidity is the mesh's lifetime of tickets and certificates.
	MemberValidity time.Duration `json:"member_validity,omitempty"`
}

// NATSStatus summarises the embedded NATS server.
type NATSStatus struct {
	ServerName     string `json:"server_name"`
	ClientURL      string `json:"client_url"`
	RoutesUp       int    `json:"routes_up"`
	RoutesExpected int    `json:"routes_expected"`
	// Routes are the server's open route connections: the same ids over
	// time mean no route was dropped.
	Routes    []RouteConn `json:"routes,omitempty"`
	JetStream string      `json:"jetstream"`

	// RouteServers names the servers a route is up to (what nats-server's
	// Routez reports), sorted.
	RouteServers []string `json:"route_servers,omitempty"`

	// Role is "core" (route cluster and JetStream meta group, a leaf-node
	// listener) or "leaf" (a NATS leaf node of the core). Empty from an
	// earlier build: core.
	Role string `json:"role,omitempty"`
	// LeafOf is, on a leaf, the core member its leaf connection is up to
	// ("" while none is), of LeafCore core members it may use.
	LeafOf   string `json:"leaf_of,omitempty"`
	LeafCore int    `json:"leaf_core,omitempty"`
	// Leaves counts the open leaf connections: on a core member those of
	// its leaf members, on a leaf its own (one when connected).
	Leaves int `json:"leaves,omitempty"`
}

// NATS roles (NATSStatus.Role).
const (
	NATSRoleCore = "core"
	NATSRoleLeaf = "leaf"
)

// RouteConn is one open NATS route connection.
type RouteConn struct {
	ID     uint64    `json:"id"` // nats-server's connection id
	Remote string    `json:"remote"`
	Start  time.Time `json:"start"`
}
