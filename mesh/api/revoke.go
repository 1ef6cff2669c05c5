package api

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// PathRevoke is the revoke endpoint: POST RevokeRequest, answer Revoked.
const PathRevoke = "/v1/revoke"

// RevokeRequest asks an admin node to revoke a member.
type RevokeRequest struct {
	// Target is a member's name or its node key in text form
	// (identity.NodePublic.String).
	Target string `json:"target"`
	Reason string `json:"reason"`
}

// Revoked is one revocation as the local API reports it: the answer to a
// revoke, and one entry of Status.Revoked.
type Revoked struct {
	Name   string              `json:"name"` // "" when the record names no member
	Node   identity.NodePublic `json:"node"`
	Addr   netip.Addr          `json:"overlay_addr"`
	Time   time.Time           `json:"time"`
	Issuer string              `json:"issuer"` // the admin that signed it; "" for old records
	Reason string              `json:"reason"`
	// Already is true in a revoke answer when the member had been revoked
	// before: nothing was signed, the record shown is the one that holds.
	Already bool `json:"already,omitempty"`
}

// Revoke asks the daemon (an admin node) to revoke target, a member name
// or node key, and hand the revocation to gossip.
func (c *Client) Revoke(ctx context.Context, target, reason string) (*Revoked, error) {
	var r Revoked
	if err := c.do(ctx, http.MethodPost, PathRevoke, RevokeRequest{Target: target, Reason: reason}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
