package api

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// The phone endpoints (admin nodes for add and remove; any node for list).
const (
	PathPhones      = "/v1/phones"        // GET: []PhoneStatus
	PathPhoneAdd    = "/v1/phones/add"    // POST PhoneAddRequest: PhoneAddResponse
	PathPhoneRemove = "/v1/phones/remove" // POST PhoneRemoveRequest: {}
)

// PhoneAddRequest asks an admin node to make a phone.
type PhoneAddRequest struct {
	Name string        `json:"name"`
	Hubs []string      `json:"hubs"` // member names, first = default route
	Pub  []string      `json:"allow_pub,omitempty"`
	Sub  []string      `json:"allow_sub,omitempty"`
	TTL  time.Duration `json:"ttl"`
}

// PhoneAddResponse is everything the phone needs, shown once: the private
// parts exist nowhere else.
type PhoneAddResponse struct {
	Name string     `json:"name"`
	Addr netip.Addr `json:"overlay_addr"`
	// Prefix is the mesh /48: the phone's AllowedIPs (split tunnel).
	Prefix netip.Prefix `json:"mesh_prefix"`
	// WireGuardPrivate is the phone's WireGuard private key (base64).
	WireGuardPrivate string `json:"wireguard_private_key"`
	// NKeySeed is the phone's NATS user seed ("SU…").
	NKeySeed    string              `json:"nkey_seed"`
	NKey        string              `json:"nkey"`
	InboxPrefix string              `json:"inbox_prefix"`
	Pub         []string            `json:"allow_pub"`
	Sub         []string            `json:"allow_sub"`
	Expires     time.Time           `json:"expires"`
	Tunnels     []PhoneHub          `json:"tunnels"`
	CAPEM       string              `json:"ca_pem"` // the mesh CA: NATS TLS is pinned to it
	Mesh        string              `json:"mesh"`
	Issued      time.Time           `json:"issued"`
	Node        identity.NodePublic `json:"identity"`
}

// PhoneHub is one tunnel of a phone: the hub it peers with.
type PhoneHub struct {
	Name      string                   `json:"name"`
	PublicKey identity.WireGuardPublic `json:"wireguard_key"`
	Endpoint  netip.AddrPort           `json:"endpoint"` // underlay, what the phone dials
	Addr      netip.Addr               `json:"overlay_addr"`
	NATSURL   string                   `json:"nats_url"` // on the hub's overlay address
}

// PhoneRemoveRequest names the phone to revoke.
type PhoneRemoveRequest struct {
	Name string `json:"name"`
}

// PhoneStatus is one line of `meshnode phone list` and of status.
type PhoneStatus struct {
	Name string     `json:"name"`
	Addr netip.Addr `json:"overlay_addr"`
	Hubs []string   `json:"hubs"`
	// Via is the hub this node routes the phone through ("" when this
	// node is its hub, "-" when no hub is known).
	Via string `json:"via"`
	// Local is true on the phone's hubs: the counters below are theirs.
	Local         bool      `json:"local"`
	Endpoint      string    `json:"endpoint,omitempty"`
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	RxBytes       int64     `json:"rx_bytes"`
	TxBytes       int64     `json:"tx_bytes"`
	Expires       time.Time `json:"expires"`
}

// PhoneAdd asks an admin daemon to make a phone.
func (c *Client) PhoneAdd(ctx context.Context, req PhoneAddRequest) (*PhoneAddResponse, error) {
	var r PhoneAddResponse
	if err := c.do(ctx, http.MethodPost, PathPhoneAdd, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// PhoneRemove revokes a phone mesh-wide.
func (c *Client) PhoneRemove(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, PathPhoneRemove, PhoneRemoveRequest{Name: name}, nil)
}

// Phones lists the phones the daemon knows.
func (c *Client) Phones(ctx context.Context) ([]PhoneStatus, error) {
	var r []PhoneStatus
	if err := c.do(ctx, http.MethodGet, PathPhones, nil, &r); err != nil {
		return nil, err
	}
	return r, nil
}
