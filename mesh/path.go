package mesh

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// This file is the path state machine: for every member, whether this node
// reaches it directly (its own WireGuard peer, at an endpoint), through a
// hub (its /128 in the hub's AllowedIPs: the hub decrypts and re-encrypts),
// or not at all, and why. It is a pure function of what it is told on each
// tick (handshakes, byte counters, endpoints, the hubs' reach reports) and
// of its own timers, so it is table-tested against an in-memory NAT model
// without a device (path_test.go).
//
// The rules, for a member that is not a hub while this node is not a hub
// (hubs are reachable: every path to or from one is direct):
//
//   - direct while the member's own peer had a handshake within
//     sessionFresh and something was heard from it within directSilence
//     (both ends send a keepalive every 25 s, so silence means the path
//     broke, e.g. a NAT mapping changed);
//   - a member first seen, or whose endpoints changed, is tried directly
//     for directTimeout: its /128 stays on its own peer, so WireGuard's
//     handshakes (every 5 s, from both ends) punch through endpoint-
//     independent NATs;
//   - after that, or as soon as a direct path is lost, traffic goes through
//     the lowest-named hub that this node has a direct path to and that
//     reported, within reachFresh, a direct path to the member. The member
//     applies the same rule to the same hub reports from its side, so both
//     ends pick the same hub (WireGuard's AllowedIPs is also the inbound
//     source check: the two ends must agree);
//   - while relayed (or without any path), the direct path is probed every
//     probeEvery at wall-clock multiples of it, so that both ends, with
//     synchronised clocks, send their handshakes at the same moment; each
//     probe starts wireguard-go's own retries (every 5 s for 90 s), which
//     overlap the other end's even without synchronised clocks. Each probe
//     tries the next candidate endpoint. A fresh handshake moves the member
//     back to direct.
//
// --relay-only makes every member that is not a hub relayed at once (the
// plan then gives it no peer of its own, so that its direct handshakes go
// unanswered and it relays too); --no-relay never relays.
const (
	directTimeout = 20 * time.Second
	probeEvery    = 60 * time.Second
	directSilence = 60 * time.Second
	// sessionFresh is WireGuard's REJECT_AFTER_TIME: a session without a
	// handshake for this long carries nothing.
	sessionFresh = 180 * time.Second
	// reachFresh is how long a hub's answer about whom it reaches counts.
	reachFresh = 30 * time.Second
)

// PathMode is how this node may reach members (--relay-only, --no-relay).
type PathMode uint8

const (
	PathAuto PathMode = iota
	PathRelayOnly
	PathNoRelay
)

// PathKind is how a member is reached.
type PathKind uint8

const (
	PathNone PathKind = iota
	PathDirect
	PathRelay
)

func (k PathKind) String() string {
	switch k {
	case PathDirect:
		return "direct"
	case PathRelay:
		return "relay"
	default:
		return "none"
	}
}

// Path is how one member is reached, and why.
type Path struct {
	Kind PathKind
	// Via and ViaName name the hub of a relayed path.
	Via     identity.NodePublic
	ViaName string
	// Endpoint is where the member's own peer is dialled: the live one
	// for a direct path, the candidate being tried otherwise; zero means
	// whatever the plan picks from the member's endpoints.
	Endpoint netip.AddrPort
	// Reason says why a path is relayed or none; empty for direct.
	Reason string
	// Since is when Kind (and Via) last changed.
	Since time.Time
}

// String is the PATH column of `meshnode status`: "direct 203.0.113.7:41641",
// "relay hub1 (no direct handshake for 20 s; their NAT maps per
// destination)", "none (hub1 unreachable)".
func (p Path) String() string {
	var s string
	switch p.Kind {
	case PathDirect:
		s = "direct"
		if p.Endpoint.IsValid() {
			s += " " + p.Endpoint.String()
		}
	case PathRelay:
		s = "relay " + p.ViaName
	default:
		s = "none"
	}
	if p.Reason != "" {
		s += " (" + p.Reason + ")"
	}
	return s
}

// routing is the part of a path the plan depends on: a change of it needs
// a reconcile, a change of the reason does not.
func (p Path) routing() (PathKind, identity.NodePublic, netip.AddrPort) {
	return p.Kind, p.Via, p.Endpoint
}

// NATHint is what a member's advertised endpoints say about its NAT.
type NATHint uint8

const (
	NATUnknown NATHint = iota
	// NATRewritesPort: a mapped port differs from the local one. Most
	// often a NAT that maps per destination; sometimes only a port clash
	// behind an endpoint-independent one.
	NATRewritesPort
	// NATPerDestination: two hubs saw two different ports.
	NATPerDestination
)

// natHintOf reads a NAT hint from a member's advertised endpoints: its
// observed (mapped) endpoints come first and its local ones, all at its
// listen port, after them. Two endpoints with one address and different
// ports are two hubs' differing views: a mapping per destination. Any
// other port difference is a rewritten port.
func natHintOf(eps []netip.AddrPort) NATHint {
	hint := NATUnknown
	for i, a := range eps {
		for _, b := range eps[i+1:] {
			switch {
			case a.Port() == b.Port():
			case a.Addr() == b.Addr():
				return NATPerDestination
			default:
				hint = NATRewritesPort
			}
		}
	}
	return hint
}

func (h NATHint) phrase(whose string) string {
	switch h {
	case NATPerDestination:
		return whose + " NAT maps per destination"
	case NATRewritesPort:
		return whose + " NAT rewrites ports"
	}
	return ""
}

// PathFacts is what the machine is told about one member on a tick.
type PathFacts struct {
	Name  string
	Node  identity.NodePublic
	Hub   bool // the member's ticket has the hub role
	Alive bool // gossip sees it alive
	// LastHandshake, RxBytes and Endpoint are the member's own WireGuard
	// peer's (zero when it has none).
	LastHandshake time.Time
	RxBytes       int64
	Endpoint      netip.AddrPort
	// Candidates are the member's endpoints this node can dial, best
	// first (see candidates); NAT is what they say about its NAT.
	Candidates []netip.AddrPort
	NAT        NATHint
}

// HubReport is a hub's last answer to this node's observe query: the
// members (among those asked about) it has a direct path to.
type HubReport struct {
	At      time.Time
	Reaches map[identity.NodePublic]bool
}

// PathInput is one tick's view.
type PathInput struct {
	Now     time.Time
	SelfHub bool
	Mode    PathMode
	OurNAT  NATHint
	Members []PathFacts
	// Ours are this node's advertised endpoints: when they change, every
	// member is probed at once (the members see the change too, and probe
	// us at once: the two ends' handshakes meet).
	Ours []netip.AddrPort
	// Reports are the hubs' answers, by hub identity.
	Reports map[identity.NodePublic]HubReport
}

// PathStep is what one tick decided.
type PathStep struct {
	Paths map[identity.NodePublic]Path
	// Probe lists the members whose direct path to probe now (a handshake
	// initiation on their own peer, at the Endpoint of their Path, which
	// the caller applies first).
	Probe []identity.NodePublic
	// Ask lists the members not reached directly: hubs are asked whether
	// they reach them.
	Ask []identity.NodePublic
	// Changed reports whether any path's routing changed, i.e. the plan
	// must be recomputed.
	Changed bool
}

type phase uint8

const (
	phaseTrying phase = iota // a direct attempt is under way, for at most directTimeout
	phaseDirect
	phaseFallback // relayed or none; the direct path is probed every probeEvery
)

// pathState is the machine's memory of one member.
type pathState struct {
	phase    phase
	path     Path
	tryStart time.Time // start of the current direct attempt
	// why is the reason the member left the direct attempt ("no direct
	// handshake for 20 s" or "direct path lost: …").
	why string
	// rx and heard: the last RxBytes seen and when it last changed.
	rx    int64
	heard time.Time
	// cands is the candidate list last seen, cand the index being tried.
	cands     []netip.AddrPort
	cand      int
	probed    int // probes since cands changed
	nextProbe time.Time
}

// Paths is the path state machine. It is not safe for concurrent use: the
// node's path loop owns it and publishes each step's result.
type Paths struct {
	st   map[identity.NodePublic]*pathState
	ours []netip.AddrPort
}

// NewPaths returns a machine that knows no member yet.
func NewPaths() *Paths { return &Paths{st: map[identity.NodePublic]*pathState{}} }

// Step advances the machine to in.Now.
func (ps *Paths) Step(in PathInput) PathStep {
	now := in.Now
	out := PathStep{Paths: make(map[identity.NodePublic]Path, len(in.Members))}
	seen := make(map[identity.NodePublic]bool, len(in.Members))
	byNode := make(map[identity.NodePublic]*PathFacts, len(in.Members))
	for i := range in.Members {
		byNode[in.Members[i].Node] = &in.Members[i]
	}
	// First every member's own liveness, so that hub choice below can ask
	// whether this node has a direct path to a hub.
	for i := range in.Members {
		f := &in.Members[i]
		seen[f.Node] = true
		s := ps.st[f.Node]
		if s == nil {
			s = &pathState{phase: phaseTrying, tryStart: now, nextProbe: now, rx: f.RxBytes}
			ps.st[f.Node] = s
		}
		if f.RxBytes != s.rx {
			s.rx, s.heard = f.RxBytes, now
		}
		if f.LastHandshake.After(s.heard) {
			s.heard = f.LastHandshake
		}
	}
	for k := range ps.st {
		if !seen[k] {
			delete(ps.st, k)
		}
	}
	if !slices.Equal(in.Ours, ps.ours) {
		ps.ours = slices.Clone(in.Ours)
		for _, s := range ps.st {
			s.nextProbe, s.probed = now, 0
		}
	}
	up := func(f *PathFacts) bool {
		s := ps.st[f.Node]
		return !f.LastHandshake.IsZero() && now.Sub(f.LastHandshake) < sessionFresh &&
			!s.heard.IsZero() && now.Sub(s.heard) < directSilence
	}

	for i := range in.Members {
		f := &in.Members[i]
		s := ps.st[f.Node]
		prev := s.path
		if !slices.Equal(f.Candidates, s.cands) {
			// New endpoints are news the other end acts on too (it
			// re-signed them, or saw ours change): try them at once.
			s.cands, s.cand, s.probed = slices.Clone(f.Candidates), 0, 0
			s.nextProbe = now
		}
		var p Path
		switch {
		case f.Hub || in.SelfHub:
			p = ps.directOnly(f, s, up(f), now)
			// A hub this node lost is asked again (wireguard-go gives up
			// after 90 s); a hub never dials a member, which calls in.
			if p.Kind != PathDirect && !in.SelfHub && !now.Before(s.nextProbe) {
				out.Probe = append(out.Probe, f.Node)
				s.nextProbe = alignedAfter(now, probeEvery)
			}
		case in.Mode == PathRelayOnly:
			s.phase, s.why = phaseFallback, "--relay-only on this node"
			p = ps.relay(in, f, s, byNode, up)
		case up(f):
			s.phase = phaseDirect
			p = Path{Kind: PathDirect, Endpoint: f.Endpoint}
		default:
			switch s.phase {
			case phaseDirect:
				// Lost: relay at once (if a hub can) and probe.
				s.phase = phaseFallback
				s.why = fmt.Sprintf("direct path lost: nothing heard for %s", secs(directSilence))
				s.nextProbe = now
			case phaseTrying:
				if now.Sub(s.tryStart) >= directTimeout {
					s.phase = phaseFallback
					s.why = fmt.Sprintf("no direct handshake for %s", secs(directTimeout))
					s.nextProbe = alignedAfter(now, probeEvery)
				}
			}
			if s.phase == phaseTrying {
				p = Path{Kind: PathNone, Endpoint: s.candidate(),
					Reason: fmt.Sprintf("trying direct %s for %s", endpointOrNone(s.candidate()), secs(now.Sub(s.tryStart)))}
			} else if in.Mode == PathNoRelay {
				p = Path{Kind: PathNone, Endpoint: s.candidate(), Reason: s.why + "; relaying is off on this node (--no-relay)"}
			} else {
				p = ps.relay(in, f, s, byNode, up)
			}
			if !now.Before(s.nextProbe) && in.Mode != PathRelayOnly {
				// After a failed attempt every other probe tries one of
				// the other candidates in turn; the best guess (the
				// first) gets the rest, so that a path that opens is
				// found within two probes.
				s.cand = 0
				if n := s.probed; s.phase == phaseFallback && n%2 == 1 && len(s.cands) > 1 {
					s.cand = 1 + (n/2)%(len(s.cands)-1)
				}
				s.probed++
				p.Endpoint = s.candidate()
				out.Probe = append(out.Probe, f.Node)
				s.nextProbe = alignedAfter(now, probeEvery)
				if s.phase == phaseTrying {
					// wireguard-go retries every 5 s on its own; one
					// more push halfway through the attempt costs nothing.
					s.nextProbe = now.Add(directTimeout / 2)
				}
			}
		}
		if p.Kind != PathDirect {
			out.Ask = append(out.Ask, f.Node)
		}
		if p.Kind == prev.Kind && p.Via == prev.Via && !prev.Since.IsZero() {
			p.Since = prev.Since
		} else {
			p.Since = now
		}
		if k, v, e := p.routing(); k != prev.Kind || v != prev.Via || e != prev.Endpoint || prev.Since.IsZero() {
			out.Changed = true
		}
		s.path = p
		out.Paths[f.Node] = p
	}
	slices.SortFunc(out.Probe, compareNode)
	slices.SortFunc(out.Ask, compareNode)
	return out
}

// directOnly is the path to a hub, or any path from a hub: direct or none.
func (ps *Paths) directOnly(f *PathFacts, s *pathState, up bool, now time.Time) Path {
	if up {
		s.phase = phaseDirect
		return Path{Kind: PathDirect, Endpoint: f.Endpoint}
	}
	s.phase = phaseTrying
	switch {
	case f.LastHandshake.IsZero():
		return Path{Kind: PathNone, Reason: "no handshake yet"}
	case s.heard.IsZero():
		return Path{Kind: PathNone, Reason: "nothing heard"}
	default:
		return Path{Kind: PathNone, Reason: "nothing heard for " + secs(now.Sub(s.heard))}
	}
}

// relay picks the hub for f, or says why there is none.
func (ps *Paths) relay(in PathInput, f *PathFacts, s *pathState, byNode map[identity.NodePublic]*PathFacts, up func(*PathFacts) bool) Path {
	var hubs []*PathFacts
	for i := range in.Members {
		h := &in.Members[i]
		if h.Hub && h.Node != f.Node {
			hubs = append(hubs, h)
		}
	}
	slices.SortFunc(hubs, func(a, b *PathFacts) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), compareNode(a.Node, b.Node))
	})
	why := s.why
	if hint := in.OurNAT.phrase("our"); hint != "" {
		why += "; " + hint
	}
	if hint := f.NAT.phrase("their"); hint != "" {
		why += "; " + hint
	}
	if len(s.cands) == 0 && in.Mode != PathRelayOnly {
		why += "; no endpoint to try"
	}
	noneWhy := ""
	for _, h := range hubs {
		r, fresh := in.Reports[h.Node]
		fresh = fresh && in.Now.Sub(r.At) < reachFresh && !r.At.After(in.Now)
		switch {
		case !h.Alive || !up(h):
			noneWhy = cmp.Or(noneWhy, h.Name+" unreachable")
		case !fresh:
			noneWhy = cmp.Or(noneWhy, h.Name+" has not answered")
		case !r.Reaches[f.Node]:
			noneWhy = cmp.Or(noneWhy, h.Name+" does not reach "+f.Name)
		default:
			return Path{Kind: PathRelay, Via: h.Node, ViaName: h.Name, Endpoint: s.candidate(), Reason: why}
		}
	}
	if noneWhy == "" {
		noneWhy = why + "; no hub to relay through"
	}
	return Path{Kind: PathNone, Endpoint: s.candidate(), Reason: noneWhy}
}

func (s *pathState) candidate() netip.AddrPort {
	if len(s.cands) == 0 {
		return netip.AddrPort{}
	}
	return s.cands[s.cand%len(s.cands)]
}

// alignedAfter is the first multiple of every (in wall-clock time) after
// now: two nodes with synchronised clocks probe each other at the same
// moment, which is what opens two NATs at once.
func alignedAfter(now time.Time, every time.Duration) time.Time {
	return now.Truncate(every).Add(every)
}

func compareNode(a, b identity.NodePublic) int { return strings.Compare(string(a[:]), string(b[:])) }

func secs(d time.Duration) string { return fmt.Sprintf("%d s", int(d.Round(time.Second)/time.Second)) }

func endpointOrNone(ep netip.AddrPort) string {
	if !ep.IsValid() {
		return "(no endpoint)"
	}
	return ep.String()
}

// candidates orders a member's advertised endpoints for direct attempts:
// only families this node can dial; a member behind the same public
// address as this node (the same NAT, which rarely hairpins) is tried at
// its local endpoints first, everyone else at its observed ones, which it
// advertises first. ours are this node's local endpoints, observed its
// mapped ones.
func candidates(theirs, ours, observed []netip.AddrPort) []netip.AddrPort {
	has4, has6 := false, false
	public := map[netip.Addr]bool{}
	for _, o := range slices.Concat(ours, observed) {
		if o.Addr().Unmap().Is4() {
			has4 = true
		} else {
			has6 = true
		}
	}
	for _, o := range observed {
		public[o.Addr()] = true
	}
	var out []netip.AddrPort
	for _, t := range theirs {
		if (t.Addr().Unmap().Is4() && has4) || (!t.Addr().Unmap().Is4() && has6) || (!has4 && !has6) {
			out = append(out, t)
		}
	}
	sameNAT := false
	for _, t := range out {
		sameNAT = sameNAT || public[t.Addr()]
	}
	if sameNAT {
		// Stable: their local endpoints (not our public address) first.
		slices.SortStableFunc(out, func(a, b netip.AddrPort) int {
			pa, pb := public[a.Addr()], public[b.Addr()]
			switch {
			case pa == pb:
				return 0
			case pb:
				return -1
			default:
				return 1
			}
		})
	}
	return out
}
