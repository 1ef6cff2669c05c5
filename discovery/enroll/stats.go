package enroll

import "sync"

// stats are the endpoint's counters, for metrics: joins admitted, joins
// refused by wire error code, requests refused by the rate limiter.
type stats struct {
	mu          sync.Mutex
	admitted    uint64
	refused     map[string]uint64 // join refusals by code; bounded by the Code* set
	rateLimited uint64
}

// Stats is a snapshot of the endpoint's counters.
type Stats struct {
	JoinsAdmitted uint64
	JoinsRefused  map[string]uint64 // by wire error code (token-used, name-taken, …)
	RateLimited   uint64
}

func (s *stats) admit() {
	s.mu.Lock()
	s.admitted++
	s.mu.Unlock()
}

func (s *stats) refuse(code string) {
	s.mu.Lock()
	if s.refused == nil {
		s.refused = map[string]uint64{}
	}
	s.refused[code]++
	s.mu.Unlock()
}

func (s *stats) limit() {
	s.mu.Lock()
	s.rateLimited++
	s.mu.Unlock()
}

// Stats snapshots the counters.
func (s *Server) Stats() Stats {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	out := Stats{JoinsAdmitted: s.stats.admitted, RateLimited: s.stats.rateLimited, JoinsRefused: make(map[string]uint64, len(s.stats.refused))}
	for k, v := range s.stats.refused {
		out.JoinsRefused[k] = v
	}
	return out
}
