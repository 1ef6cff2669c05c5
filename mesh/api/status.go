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
	CertExpires   time.Time                `json:"cert_expires"`
	TicketExpires time.Time                `json:"ticket_expires"`
	Members       []MemberStatus           `json:"members"`
	NATS          NATSStatus               `json:"nats"`
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
	Path          string         `json:"path"` // "direct <endpoint>" or "-"
	LastHandshake time.Time      `json:"last_handshake,omitzero"`
	RxBytes       int64          `json:"rx_bytes"`
	TxBytes       int64          `json:"tx_bytes"`
	// NATSClientPort is the member's NATS client port on its overlay
	// address (nats-env lists every live member's client URL).
	NATSClientPort uint16 `json:"nats_client_port,omitempty"`
}

// NATSStatus summarises the embedded NATS server.
type NATSStatus struct {
	ServerName     string `json:"server_name"`
	ClientURL      string `json:"client_url"`
	RoutesUp       int    `json:"routes_up"`
	RoutesExpected int    `json:"routes_expected"`
	JetStream      string `json:"jetstream"`
}
