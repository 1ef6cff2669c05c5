package enroll

import (
	"crypto/rand"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

const (
	challengeTTL  = time.Minute
	maxChallenges = 1024
	// One address may hold only a few outstanding challenges, so a single
	// caller cannot take every slot and lock out honest members.
	maxChallengesPerAddr = 16
)

// challengeTable holds the hello challenges this server issued and that
// are not used yet. A challenge is good once, for challengeTTL: a hello
// signature cannot be replayed.
type challengeTable struct {
	mu     sync.Mutex
	issued map[string]issuedChallenge
}

// issuedChallenge is an outstanding challenge: who asked, until when.
type issuedChallenge struct {
	from    netip.Addr
	expires time.Time
}

func newChallengeTable() *challengeTable {
	return &challengeTable{issued: map[string]issuedChallenge{}}
}

// issue makes a fresh challenge for from, forgetting expired ones.
func (c *challengeTable) issue(from netip.Addr, now time.Time) ([]byte, *apiError) {
	ch := make([]byte, challengeSize)
	if _, err := rand.Read(ch); err != nil {
		return nil, fail(http.StatusInternalServerError, CodeInternalError, "challenge: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	mine := 0
	for k, ic := range c.issued {
		switch {
		case now.After(ic.expires):
			delete(c.issued, k)
		case ic.from == from:
			mine++
		}
	}
	if mine >= maxChallengesPerAddr {
		return nil, fail(http.StatusTooManyRequests, CodeRateLimited, "%s holds %d unused challenges; use or let them expire (%s)", from, mine, challengeTTL)
	}
	if len(c.issued) >= maxChallenges {
		return nil, fail(http.StatusServiceUnavailable, CodeUnavailable, "too many outstanding challenges")
	}
	c.issued[string(ch)] = issuedChallenge{from: from, expires: now.Add(challengeTTL)}
	return ch, nil
}

// take uses up a challenge this server issued and that is fresh.
func (c *challengeTable) take(ch []byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ic, ok := c.issued[string(ch)]
	delete(c.issued, string(ch))
	return ok && !now.After(ic.expires)
}
