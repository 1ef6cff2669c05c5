package api

import (
	"time"

	"github.com/meshnode/meshnode/identity"
)

// The local API's endpoints (HTTP over the unix socket).
const (
	PathStatus = "/v1/status" // GET: Status
	PathInvite = "/v1/invite" // POST InviteRequest: InviteResponse
	PathLeave  = "/v1/leave"  // POST {}: {}
	// PathMetrics is the Prometheus text format (not JSON), the same as
	// the optional --metrics-addr listener serves at /metrics.
	PathMetrics = "/metrics"  // GET: text/plain; version=0.0.4
	PathRenew   = "/v1/renew" // POST {}: RenewResponse
)

// RenewResponse says what a forced renewal produced.
type RenewResponse struct {
	From          string    `json:"from"`
	TicketExpires time.Time `json:"ticket_expires"`
	CertExpires   time.Time `json:"cert_expires"`
}

// InviteRequest asks the daemon for a join token.
type InviteRequest struct {
	TTL   time.Duration  `json:"ttl"`
	Roles identity.Roles `json:"roles"`
}

// InviteResponse carries the token.
type InviteResponse struct {
	Token string `json:"token"`
}

// ErrorResponse is the body of every answer that is not 200 OK.
type ErrorResponse struct {
	Error string `json:"error"`
}
