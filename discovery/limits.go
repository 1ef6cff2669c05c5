package discovery

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/identity"
)

// Limits on what one remote node can make this node parse, verify, keep
// or log. Every member can send push/pull state; only members hold the
// gossip key, but one stolen member box must not be able to flood the rest.
const (
	// maxRemoteState bounds a push/pull's user state (the revocation list)
	// that is parsed at all: 4,096 records of the largest kind. memberlist
	// itself reads up to 20 MB before asking; beyond this bound the state
	// is dropped unparsed and the refusal counted.
	maxRemoteState = 1 + 4 + maxRevocationsPerPush*(2+maxRevocationBytes)
	// maxRevocationsPerPush bounds the records one message can hand the
	// worker (each costs a signature check). A fleet that has revoked more
	// boxes than this still converges: each push/pull carries a different
	// tail of the sender's list.
	maxRevocationsPerPush = 4096
	// maxRevocationBytes is the largest revocation record (v2): version,
	// node key, time, name and issuer (DNS labels of at most 63), reason
	// (identity.MaxReasonLen), CA key ID, signature.
	maxRevocationBytes = 1 + 32 + 8 + 2*(1+63) + 1 + identity.MaxReasonLen + 8 + 64

	// Refusal log lines: a burst, then about one a second. Counters keep
	// the full count; the log shows examples.
	refusalLogEvery = time.Second
	refusalLogBurst = 10
	// maxLogField truncates attacker-chosen strings (node names, decoder
	// errors) in log lines.
	maxLogField = 160
)

// RejectOversizedState counts push/pull states over maxRemoteState.
const RejectOversizedState = "oversized-state"

func newRefusalLog() *rate.Limiter {
	return rate.NewLimiter(rate.Every(refusalLogEvery), refusalLogBurst)
}

// truncate shortens s for a log line, saying how much was cut.
func truncate(s string) string {
	if len(s) <= maxLogField {
		return s
	}
	return s[:maxLogField] + "…(truncated)"
}
