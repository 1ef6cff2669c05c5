// Package natsclient is the connection recipe for clients of a meshnode
// mesh's NATS: the options `meshnode nats-env` recommends, the ones
// meshnode's own `nats` command uses, and a JetStream publish that
// survives a dead server. It depends on nats.go only, not on nats-server.
//
// Why these settings. Across the overlay a node that dies sends no TCP
// reset (its WireGuard interface is gone with it), so a client connected
// to it sees a frozen server, not a closed connection. nats.go notices
// that only through its stale-connection check: with its defaults (a PING
// every 2 minutes, 2 outstanding) about 6 minutes pass before it
// reconnects. With PingInterval 5 s and MaxPingsOutstanding 2 it is
// 10–15 s. Requests notice sooner: Publish here reconnects after two
// request timeouts in a row, and retries with the same Msg-Id, which
// JetStream answers as a duplicate if the first try was stored.
//
// NATS_URL lists the local node first and every other member after it.
// Trap: nats.go shuffles its server list unless told not to
// (nats.DontRandomize), which would send a client across the mesh when
// its own node is up; TestOptionsConnectLocalFirst pins it.
package natsclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The recommended settings.
const (
	// PingInterval and MaxPingsOutstanding bound how long a dead server
	// goes unnoticed: PingInterval × (MaxPingsOutstanding + 1) at most.
	PingInterval        = 5 * time.Second
	MaxPingsOutstanding = 2
	// ReconnectWait is the pause before trying a server again; the
	// other members are tried in between.
	ReconnectWait = time.Second
	// RequestTimeout bounds one JetStream publish attempt.
	RequestTimeout = 2 * time.Second
	// TimeoutsBeforeReconnect is how many request timeouts in a row
	// make Publish drop the connection and move to the next server.
	TimeoutsBeforeReconnect = 2
)

// Options are the recommended connection options, to be given to
// nats.Connect with the mesh's credentials and TLS settings.
func Options() []nats.Option {
	return []nats.Option{
		nats.PingInterval(PingInterval),
		nats.MaxPingsOutstanding(MaxPingsOutstanding),
		nats.ReconnectWait(ReconnectWait),
		nats.MaxReconnects(-1),
		// Keep NATS_URL's order: the local node first.
		nats.DontRandomize(),
	}
}

// URLs is the NATS_URL value: local first, then the others in the order
// given, without duplicates or empty entries.
func URLs(local string, others ...string) string {
	out := []string{}
	for _, u := range append([]string{local}, others...) {
		if u != "" && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return strings.Join(out, ",")
}

// Publish publishes one message to JetStream with Msg-Id id and waits for
// its acknowledgement, retrying until ctx ends. Every try carries the
// same Msg-Id, so a message stored by a try whose acknowledgement was lost
// is stored once (the retry's ack says Duplicate). After
// TimeoutsBeforeReconnect timeouts in a row it forces nc to reconnect: a
// server that stopped answering is, across the overlay, most likely dead,
// and waiting for the ping check would take longer.
func Publish(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, subject string, data []byte, id string) (*jetstream.PubAck, error) {
	if id == "" {
		return nil, errors.New("natsclient: publish without a Msg-Id cannot be retried safely")
	}
	timeouts := 0
	for {
		c, cancel := context.WithTimeout(ctx, RequestTimeout)
		ack, err := js.Publish(c, subject, data, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("natsclient: publish %s (Msg-Id %s): %w", subject, id, err)
		}
		var apiErr *jetstream.APIError
		switch {
		case nc.IsClosed():
			return nil, fmt.Errorf("natsclient: publish %s: %w", subject, err)
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			if timeouts++; timeouts >= TimeoutsBeforeReconnect {
				timeouts = 0
				_ = nc.ForceReconnect()
			}
		case errors.As(err, &apiErr) && transientAPIError(apiErr.ErrorCode):
			// A failover in progress: try again with the same Msg-Id.
		case errors.As(err, &apiErr):
			// The stream refused the message (limits, a subject it does
			// not take): trying again cannot help.
			return nil, fmt.Errorf("natsclient: publish %s: %w", subject, err)
		default:
			// No responders (a stream leader election, a reconnect in
			// progress): wait a little and try again.
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("natsclient: publish %s (Msg-Id %s): %w", subject, id, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// The JetStream API errors a failover answers with, which a retry with the
// same Msg-Id gets past (nats-server's error identifiers):
//
//   - 10158 "duplicate message id is in process": a retry reached the new
//     stream leader while the first try was still being stored there; the
//     next try is answered as a duplicate (the fault test saw it in 3 of
//     12 runs);
//   - 10008 "JetStream system temporarily unavailable" and 10009 "JetStream
//     cluster can not handle request": no meta or stream leader yet.
const (
	errCodeDuplicateInProcess jetstream.ErrorCode = 10158
	errCodeClusterNotAvail    jetstream.ErrorCode = 10008
	errCodeClusterNotLeader   jetstream.ErrorCode = 10009
)

func transientAPIError(c jetstream.ErrorCode) bool {
	switch c {
	case errCodeDuplicateInProcess, errCodeClusterNotAvail, errCodeClusterNotLeader:
		return true
	}
	return false
}
