package enroll

import (
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/simplelru"
	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/mesh/defaults"
)

// limiter counts refused requests per source prefix and endpoint-wide.
// max refusals within window make a prefix wait out the window; refusals
// beyond the endpoint-wide token bucket make every source wait. Only
// refusals are counted: granted requests cost nothing, so a member's
// hellos never lock it out.
type limiter struct {
	max    int
	window time.Duration
	global *rate.Limiter // refusals endpoint-wide; locks itself

	mu       sync.Mutex
	prefixes *simplelru.LRU // netip.Prefix → *failures, least recently seen evicted
}

type failures struct {
	n     int
	first time.Time
}

func newLimiter(max int, window time.Duration) *limiter {
	lru, err := simplelru.NewLRU(defaults.EnrollTrackedPrefixes, nil)
	if err != nil {
		panic(err) // only for a size < 1
	}
	return &limiter{
		max: max, window: window, prefixes: lru,
		global: rate.NewLimiter(rate.Limit(defaults.EnrollRefusalRate), defaults.EnrollRefusalBurst),
	}
}

// sourcePrefix is the unit a limit applies to: an IPv6 /64 (one
// subscriber or LAN; an attacker holds all of it or none), an IPv4 address.
func sourcePrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// limited reports whether a request from a must wait: its prefix used up
// its refusals, or the endpoint did.
func (l *limiter) limited(a netip.Addr, now time.Time) bool {
	if l.global.TokensAt(now) < 1 {
		return true
	}
	p := sourcePrefix(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.prefixes.Get(p)
	if !ok {
		return false
	}
	f := v.(*failures)
	if now.Sub(f.first) > l.window {
		l.prefixes.Remove(p)
		return false
	}
	return f.n >= l.max
}

// ticketRetryAfter is what a limited GET /v2/ticket is told to wait.
const ticketRetryAfter = 10 * time.Second

// ticketLimiter is the bucket of GET /v2/ticket: per source prefix
// (defaults.EnrollTicketRate, burst EnrollTicketBurst) and endpoint-wide
// (the refusal bucket's numbers). Every answer counts, since none proves
// anything: a joiner asks once per attempt and never notices.
type ticketLimiter struct {
	global *rate.Limiter // locks itself

	mu       sync.Mutex
	prefixes *simplelru.LRU // netip.Prefix → *rate.Limiter
}

func newTicketLimiter() *ticketLimiter {
	lru, err := simplelru.NewLRU(defaults.EnrollTrackedPrefixes, nil)
	if err != nil {
		panic(err)
	}
	return &ticketLimiter{
		global:   rate.NewLimiter(rate.Limit(defaults.EnrollRefusalRate), defaults.EnrollRefusalBurst),
		prefixes: lru,
	}
}

// allow takes a token for a request from a, or reports that it must wait.
func (l *ticketLimiter) allow(a netip.Addr, now time.Time) bool {
	p := sourcePrefix(a)
	l.mu.Lock()
	var b *rate.Limiter
	if v, ok := l.prefixes.Get(p); ok {
		b = v.(*rate.Limiter)
	} else {
		b = rate.NewLimiter(rate.Limit(defaults.EnrollTicketRate), defaults.EnrollTicketBurst)
		l.prefixes.Add(p, b)
	}
	l.mu.Unlock()
	return b.AllowN(now, 1) && l.global.AllowN(now, 1)
}

// failed counts a refusal of a.
func (l *limiter) failed(a netip.Addr, now time.Time) {
	l.global.AllowN(now, 1)
	p := sourcePrefix(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	var f *failures
	if v, ok := l.prefixes.Get(p); ok {
		f = v.(*failures)
	}
	if f == nil || now.Sub(f.first) > l.window {
		f = &failures{first: now}
		l.prefixes.Add(p, f)
	}
	f.n++
}
