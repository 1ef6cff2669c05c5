package enroll

import (
	"net/netip"
	"sync"
	"time"
)

// maxFailureTrack bounds the addresses the limiter remembers, so that a
// flood from many addresses cannot grow it without limit.
const maxFailureTrack = 10000

// limiter counts refused requests per source address: max refusals within
// window make that address wait out the window. Refusals are what guessing
// tokens or names produces; granted requests are not counted.
type limiter struct {
	max    int
	window time.Duration

	mu       sync.Mutex
	failures map[netip.Addr]*failures
}

type failures struct {
	n     int
	first time.Time
}

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, failures: map[netip.Addr]*failures{}}
}

// limited reports whether a must wait before it is answered again.
func (l *limiter) limited(a netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.failures[a]
	if f == nil {
		return false
	}
	if now.Sub(f.first) > l.window {
		delete(l.failures, a)
		return false
	}
	return f.n >= l.max
}

// failed counts a refusal of a.
func (l *limiter) failed(a netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) >= maxFailureTrack {
		for k, f := range l.failures {
			if now.Sub(f.first) > l.window {
				delete(l.failures, k)
			}
		}
		if len(l.failures) >= maxFailureTrack {
			clear(l.failures)
		}
	}
	f := l.failures[a]
	if f == nil || now.Sub(f.first) > l.window {
		f = &failures{first: now}
		l.failures[a] = f
	}
	f.n++
}
