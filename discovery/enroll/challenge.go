package enroll

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/simplelru"

	"github.com/meshnode/meshnode/mesh/defaults"
)

// A hello challenge is stateless until it is used, so no caller can fill a
// table of outstanding challenges and lock honest members out:
//
//	expiry   u64  unix seconds, big-endian
//	nonce    [8]  random
//	mac      [16] HMAC-SHA256(server key, "meshnode challenge v1" || prefix || expiry || nonce)[:16]
//
// prefix is the requester's source prefix (sourcePrefix): a challenge is
// good only from where it was asked for. The server key is random per
// process: a restart invalidates outstanding challenges, which costs a
// member one more round trip. Single use is enforced after the hello's
// signature checked out (take), so only members can fill the used set,
// and it is bounded.
const (
	challengeDomain = "meshnode challenge v1"
	challengeTTL    = defaults.ChallengeTTL
	// maxUsedChallenges bounds the used set; a member would have to send
	// this many valid hellos within a TTL to evict one and replay it, and
	// a replayed hello only re-introduces that same member.
	maxUsedChallenges = 4096
)

type challengeTable struct {
	key [32]byte

	mu   sync.Mutex
	used *simplelru.LRU // string(challenge) → expiry, for valid hellos only
}

func newChallengeTable() *challengeTable {
	c := &challengeTable{}
	if _, err := rand.Read(c.key[:]); err != nil {
		panic("enroll: challenge key: " + err.Error()) // crypto/rand does not fail on Linux
	}
	c.used, _ = simplelru.NewLRU(maxUsedChallenges, nil)
	return c
}

func (c *challengeTable) mac(from netip.Addr, body []byte) []byte {
	h := hmac.New(sha256.New, c.key[:])
	h.Write([]byte(challengeDomain))
	p := sourcePrefix(from)
	b, _ := p.MarshalBinary()
	h.Write(b)
	h.Write(body)
	return h.Sum(nil)[:16]
}

// issue makes a fresh challenge for from. It keeps no state.
func (c *challengeTable) issue(from netip.Addr, now time.Time) ([]byte, *apiError) {
	ch := make([]byte, 0, challengeSize)
	ch = binary.BigEndian.AppendUint64(ch, uint64(now.Add(challengeTTL).Unix()))
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fail(http.StatusInternalServerError, CodeInternalError, "challenge: %v", err)
	}
	ch = append(ch, nonce...)
	return append(ch, c.mac(from, ch)...), nil
}

// take uses up a challenge this server issued to from's prefix and that is
// fresh. The caller has checked the hello's signature over it.
func (c *challengeTable) take(ch []byte, from netip.Addr, now time.Time) bool {
	if len(ch) != challengeSize {
		return false
	}
	body, mac := ch[:16], ch[16:]
	if !hmac.Equal(mac, c.mac(from, body)) {
		return false
	}
	expiry := time.Unix(int64(binary.BigEndian.Uint64(body[:8])), 0)
	if now.After(expiry) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.used.Contains(string(ch)) {
		return false
	}
	c.used.Add(string(ch), expiry)
	return true
}
