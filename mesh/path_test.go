package mesh

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// The in-memory NAT model: each box is public, behind an endpoint-
// independent NAT ("cone": one mapping for every destination, inbound
// accepted only from a destination the box has sent to, like Linux
// masquerade) or behind a symmetric NAT (a new port per destination). The
// model plays wireguard-go: a probe makes a box send handshakes to the
// endpoint its path says, every 5 s for 90 s; a handshake completes when
// the NATs let both directions through. A completed session keeps both
// ends hearing each other (keepalives) until a NAT mapping is flushed.

type natKind int

const (
	public natKind = iota
	cone
	symmetric
)

type simBox struct {
	name  string
	node  identity.NodePublic
	hub   bool
	nat   natKind
	pub   netip.Addr // public address (the NAT's, or its own)
	local netip.AddrPort
	mode  PathMode
	down  bool // stopped
	paths *Paths
	last  PathStep
	// sending[peer] is until when this box sends handshakes to peer, and
	// to which endpoint.
	sendUntil map[string]time.Time
	sendTo    map[string]netip.AddrPort
}

type simPair struct {
	up bool
	hs time.Time
	rx int64
}

type sim struct {
	t     *testing.T
	now   time.Time
	boxes []*simBox
	// epoch bumps a box's NAT mappings (a conntrack flush): a symmetric
	// NAT then maps to new ports, and every session through it dies.
	epoch map[string]int
	pairs map[[2]string]*simPair
}

func newSim(t *testing.T, boxes ...*simBox) *sim {
	s := &sim{t: t, now: time.Date(2026, 1, 1, 0, 0, 7, 0, time.UTC), epoch: map[string]int{}, pairs: map[[2]string]*simPair{}}
	for i, b := range boxes {
		b.node[0] = byte(i + 1)
		b.paths = NewPaths()
		b.sendUntil, b.sendTo = map[string]time.Time{}, map[string]netip.AddrPort{}
		b.local = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 168, byte(i + 1), 2}), 51820)
		b.pub = netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
		if b.nat == public {
			b.local = netip.AddrPortFrom(b.pub, 51820)
		}
	}
	s.boxes = boxes
	return s
}

func (s *sim) box(name string) *simBox {
	for _, b := range s.boxes {
		if b.name == name {
			return b
		}
	}
	s.t.Fatalf("no box %s", name)
	return nil
}

func (s *sim) pair(a, b *simBox) *simPair {
	k := [2]string{a.name, b.name}
	if a.name > b.name {
		k = [2]string{b.name, a.name}
	}
	if s.pairs[k] == nil {
		s.pairs[k] = &simPair{}
	}
	return s.pairs[k]
}

// mapped is the public endpoint of box a toward destination d.
func (s *sim) mapped(a, d *simBox) netip.AddrPort {
	switch a.nat {
	case public:
		return a.local
	case cone:
		return netip.AddrPortFrom(a.pub, 51820)
	default:
		// A port per destination (and per mapping epoch).
		return netip.AddrPortFrom(a.pub, uint16(20000+100*s.epoch[a.name]+int(d.node[0])))
	}
}

// advertised is what box a puts in its meta: its mapping as the first
// hub sees it, then its local endpoint.
func (s *sim) advertised(a *simBox) []netip.AddrPort {
	if a.nat == public {
		return []netip.AddrPort{a.local}
	}
	for _, h := range s.boxes {
		if h.hub && !h.down && h != a {
			return []netip.AddrPort{s.mapped(a, h), a.local}
		}
	}
	return []netip.AddrPort{a.local}
}

// reaches says whether a handshake from a to endpoint ep of b gets in, and
// whether b's own handshakes to a (to the endpoint b sends to) let it out
// again: the NAT rules.
func (s *sim) punches(a, b *simBox) bool {
	if a.down || b.down {
		return false
	}
	sendingA := s.now.Before(a.sendUntil[b.name])
	sendingB := s.now.Before(b.sendUntil[a.name])
	// Does traffic from a to the endpoint it dials reach b?
	okAB := sendingA && a.sendTo[b.name] == s.mapped(b, a)
	okBA := sendingB && b.sendTo[a.name] == s.mapped(a, b)
	switch {
	case a.nat == public && b.nat == public:
		return okAB || okBA
	case b.nat == public:
		return okAB // b roams to a's mapping
	case a.nat == public:
		return okBA
	default:
		// Both behind NAT: each NAT accepts only from where its box sent.
		return okAB && okBA
	}
}

func (s *sim) reaches(a, b *simBox) bool {
	if a.down || b.down {
		return false
	}
	if a.hub || b.hub {
		return true // members dial hubs, and keepalives hold the mapping
	}
	return s.pair(a, b).up
}

func (s *sim) step() {
	s.now = s.now.Add(time.Second)
	// Sessions: established by punching, kept by keepalives.
	for i, a := range s.boxes {
		for _, b := range s.boxes[i+1:] {
			p := s.pair(a, b)
			if a.down || b.down {
				p.up = false
				continue
			}
			if a.hub || b.hub {
				if p.hs.IsZero() || s.now.Sub(p.hs) >= 2*time.Minute {
					p.hs = s.now
				}
				p.rx++
				continue
			}
			if !p.up && s.punches(a, b) {
				p.up, p.hs = true, s.now
			}
			if p.up {
				p.rx++
				if s.now.Sub(p.hs) >= 2*time.Minute {
					p.hs = s.now
				}
			}
		}
	}
	for _, a := range s.boxes {
		if a.down {
			continue
		}
		in := PathInput{Now: s.now, SelfHub: a.hub, Mode: a.mode, Reports: map[identity.NodePublic]HubReport{}}
		var ourObserved []netip.AddrPort
		if adv := s.advertised(a); len(adv) > 1 {
			ourObserved = adv[:1]
		}
		if a.nat == symmetric {
			in.OurNAT = NATRewritesPort
		}
		for _, b := range s.boxes {
			if b == a {
				continue
			}
			p := s.pair(a, b)
			f := PathFacts{Name: b.name, Node: b.node, Hub: b.hub, Alive: !b.down, RxBytes: p.rx}
			if p.up || ((a.hub || b.hub) && !a.down && !b.down) {
				f.LastHandshake = p.hs
				f.Endpoint = s.mapped(b, a)
			}
			adv := s.advertised(b)
			f.Candidates = candidates(adv, []netip.AddrPort{a.local}, ourObserved)
			f.NAT = natHintOf(adv)
			in.Members = append(in.Members, f)
			if b.hub && !b.down && !a.down {
				r := HubReport{At: s.now, Reaches: map[identity.NodePublic]bool{}}
				for _, c := range s.boxes {
					if c != b && s.reaches(b, c) {
						r.Reaches[c.node] = true
					}
				}
				in.Reports[b.node] = r
			}
		}
		in.Ours = s.advertised(a)
		a.last = a.paths.Step(in)
		for _, k := range a.last.Probe {
			for _, b := range s.boxes {
				if b.node == k {
					a.sendUntil[b.name] = s.now.Add(90 * time.Second)
					a.sendTo[b.name] = a.last.Paths[k].Endpoint
					if !a.sendTo[b.name].IsValid() {
						a.sendTo[b.name] = s.advertised(b)[0]
					}
				}
			}
		}
	}
}

// flush is a conntrack flush on box a's NAT: sessions through it die, and
// a symmetric NAT maps to new ports from now on.
func (s *sim) flush(a *simBox) {
	s.epoch[a.name]++
	for _, b := range s.boxes {
		if b != a && !b.hub && !a.hub {
			s.pair(a, b).up = false
		}
	}
}

func (s *sim) run(d time.Duration) {
	for end := s.now.Add(d); s.now.Before(end); {
		s.step()
	}
}

func (s *sim) path(from, to string) Path {
	return s.box(from).last.Paths[s.box(to).node]
}

// until steps until the path from→to is of kind (returning how long it
// took), failing after limit.
func (s *sim) until(from, to string, kind PathKind, limit time.Duration) time.Duration {
	s.t.Helper()
	start := s.now
	for s.now.Sub(start) <= limit {
		s.step()
		if s.path(from, to).Kind == kind {
			return s.now.Sub(start)
		}
	}
	s.t.Fatalf("%s → %s: %s after %s, want %s", from, to, s.path(from, to), limit, kind)
	return 0
}

// agree checks that both ends route the pair the same way: the condition
// for traffic to flow at all (AllowedIPs is also the source check).
func (s *sim) agree(a, b string) {
	s.t.Helper()
	pa, pb := s.path(a, b), s.path(b, a)
	if pa.Kind != pb.Kind || pa.ViaName != pb.ViaName {
		s.t.Fatalf("%s sees %s as %q, %s sees %s as %q", a, b, pa, b, a, pb)
	}
}

func standardSim(t *testing.T) *sim {
	return newSim(t,
		&simBox{name: "hub1", hub: true, nat: public},
		&simBox{name: "pub", nat: public},
		&simBox{name: "cone1", nat: cone},
		&simBox{name: "cone2", nat: cone},
		&simBox{name: "sym1", nat: symmetric},
		&simBox{name: "sym2", nat: symmetric},
	)
}

func TestPathsEveryPairOfTheLab(t *testing.T) {
	s := standardSim(t)
	s.run(2 * time.Minute)
	want := map[[2]string]PathKind{
		{"cone1", "cone2"}: PathDirect,
		{"cone1", "pub"}:   PathDirect,
		{"sym1", "pub"}:    PathDirect, // the public end roams to the mapping
		{"hub1", "sym1"}:   PathDirect,
		{"sym1", "sym2"}:   PathRelay,
		{"cone1", "sym1"}:  PathRelay, // the cone NAT accepts only the port it sent to
	}
	for pair, kind := range want {
		s.agree(pair[0], pair[1])
		if got := s.path(pair[0], pair[1]); got.Kind != kind {
			t.Errorf("%s → %s: %s, want %s", pair[0], pair[1], got, kind)
		}
	}
	p := s.path("sym1", "sym2")
	if p.ViaName != "hub1" || !strings.Contains(p.Reason, "no direct handshake for 20 s") || !strings.Contains(p.Reason, "their NAT rewrites ports") {
		t.Errorf("sym1 → sym2: %q", p)
	}
	if got := s.path("cone1", "cone2").String(); got != "direct 198.51.100.4:51820" {
		t.Errorf("cone1 → cone2: %q", got)
	}
}

// Relaying starts only after the direct bound, and no sooner.
func TestPathsRelayAfterDirectTimeout(t *testing.T) {
	s := standardSim(t)
	s.step()
	if p := s.path("sym1", "sym2"); p.Kind != PathNone || !strings.HasPrefix(p.Reason, "trying direct 198.51.100.6:") {
		t.Fatalf("first tick: %q", p)
	}
	took := s.until("sym1", "sym2", PathRelay, time.Minute)
	if took < directTimeout-2*time.Second || took > directTimeout+2*time.Second {
		t.Errorf("relayed after %s, want about %s", took, directTimeout)
	}
	s.step()
	s.agree("sym1", "sym2")
}

// A relayed pair whose NATs start to allow a direct path moves back at the
// next probe.
func TestPathsRelayToDirectWhenAPathOpens(t *testing.T) {
	s := standardSim(t)
	s.run(time.Minute)
	s.agree("sym1", "sym2")
	if p := s.path("sym1", "sym2"); p.Kind != PathRelay {
		t.Fatalf("sym1 → sym2: %s", p)
	}
	s.box("sym1").nat, s.box("sym2").nat = cone, cone
	took := s.until("sym1", "sym2", PathDirect, probeEvery+10*time.Second)
	s.step()
	s.agree("sym1", "sym2")
	t.Logf("relay → direct %s after the path opened", took)
}

// The hub stops: relayed pairs say so; direct pairs stay direct.
func TestPathsHubDown(t *testing.T) {
	s := standardSim(t)
	s.run(time.Minute)
	s.box("hub1").down = true
	s.step()
	if got := s.path("sym1", "sym2").String(); got != "none (hub1 unreachable)" {
		t.Errorf("sym1 → sym2: %q", got)
	}
	if got := s.path("cone1", "cone2"); got.Kind != PathDirect {
		t.Errorf("cone1 → cone2: %s", got)
	}
	s.box("hub1").down = false
	s.until("sym1", "sym2", PathRelay, 5*time.Second)
}

// Two hubs: both ends choose the lowest-named hub that reaches both; one
// that does not reach the member is passed over by both.
func TestPathsSameHubAtBothEnds(t *testing.T) {
	s := newSim(t,
		&simBox{name: "hub1", hub: true, nat: public},
		&simBox{name: "hub2", hub: true, nat: public},
		&simBox{name: "sym1", nat: symmetric},
		&simBox{name: "sym2", nat: symmetric},
	)
	s.run(time.Minute)
	s.agree("sym1", "sym2")
	if p := s.path("sym1", "sym2"); p.ViaName != "hub1" {
		t.Fatalf("sym1 → sym2: %s", p)
	}
	s.box("hub1").down = true
	s.step()
	s.agree("sym1", "sym2")
	if p := s.path("sym1", "sym2"); p.ViaName != "hub2" {
		t.Fatalf("hub1 down: sym1 → sym2: %s", p)
	}
	// Two observations with different ports: a mapping per destination.
	if h := natHintOf([]netip.AddrPort{netip.MustParseAddrPort("198.51.100.3:20001"), netip.MustParseAddrPort("198.51.100.3:20002"), netip.MustParseAddrPort("192.168.3.2:51820")}); h != NATPerDestination {
		t.Errorf("natHintOf: %d", h)
	}
}

// A cone NAT's flushed mapping comes back at the next handshake: the pair
// stays (or at once is again) direct.
func TestPathsConeFlushStaysDirect(t *testing.T) {
	s := standardSim(t)
	s.run(time.Minute)
	s.flush(s.box("cone1"))
	s.run(5 * time.Second)
	s.agree("cone1", "cone2")
	if p := s.path("cone1", "cone2"); p.Kind != PathDirect {
		t.Fatalf("cone1 → cone2: %s", p)
	}
}

// A direct path that dies for good (the NAT now maps per destination) is
// relayed at once, and comes back direct when the NAT allows it again.
func TestPathsDirectLostAndRecovered(t *testing.T) {
	s := standardSim(t)
	s.run(time.Minute)
	if p := s.path("cone1", "cone2"); p.Kind != PathDirect {
		t.Fatalf("cone1 → cone2: %s", p)
	}
	s.box("cone1").nat = symmetric
	s.flush(s.box("cone1"))
	s.until("cone1", "cone2", PathRelay, 5*time.Second)
	if p := s.path("cone1", "cone2"); !strings.Contains(p.Reason, "direct path lost") {
		t.Errorf("after flush: %q", p)
	}
	s.step()
	s.agree("cone1", "cone2")
	s.box("cone1").nat = cone
	s.until("cone1", "cone2", PathDirect, 2*probeEvery+10*time.Second)
	s.step()
	s.agree("cone1", "cone2")
}

// A symmetric NAT's new mapping (flush) changes its advertised endpoint;
// the relayed pair stays relayed and agreed.
func TestPathsSymmetricFlushStaysRelayed(t *testing.T) {
	s := standardSim(t)
	s.run(time.Minute)
	s.flush(s.box("sym1"))
	for range 30 {
		s.step()
		s.agree("sym1", "sym2")
	}
	if p := s.path("sym2", "sym1"); p.Kind != PathRelay {
		t.Errorf("sym2 → sym1: %s", p)
	}
}

func TestPathsModes(t *testing.T) {
	s := standardSim(t)
	s.box("cone1").mode = PathRelayOnly
	s.box("sym1").mode = PathNoRelay
	s.step()
	if p := s.path("cone1", "cone2"); p.Kind != PathRelay || !strings.Contains(p.Reason, "--relay-only on this node") {
		t.Errorf("relay-only: cone1 → cone2: %q", p)
	}
	if pr := s.box("cone1").last.Probe; len(pr) != 0 {
		t.Errorf("relay-only probes %d members", len(pr))
	}
	if p := s.path("cone1", "hub1"); p.Kind != PathDirect {
		t.Errorf("relay-only: cone1 → hub1: %s", p)
	}
	s.run(30 * time.Second)
	if p := s.path("sym1", "sym2"); p.Kind != PathNone || !strings.Contains(p.Reason, "--no-relay") {
		t.Errorf("no-relay: sym1 → sym2: %q", p)
	}
}

// Probes come at wall-clock multiples of probeEvery, so both ends of a
// pair probe in the same second.
func TestPathsProbesAligned(t *testing.T) {
	s := standardSim(t)
	s.run(25 * time.Second)
	var at []string
	for range 130 {
		s.step()
		for _, b := range []string{"sym1", "sym2"} {
			for _, k := range s.box(b).last.Probe {
				if k == s.box(map[string]string{"sym1": "sym2", "sym2": "sym1"}[b]).node {
					at = append(at, fmt.Sprintf("%s@%d", b, s.now.Unix()%60))
				}
			}
		}
	}
	want := "sym1@0 sym2@0 sym1@0 sym2@0"
	if got := strings.Join(at, " "); got != want {
		t.Errorf("probes %s, want %s", got, want)
	}
}

func TestPathString(t *testing.T) {
	for _, c := range []struct {
		p    Path
		want string
	}{
		{Path{Kind: PathDirect, Endpoint: netip.MustParseAddrPort("203.0.113.7:41641")}, "direct 203.0.113.7:41641"},
		{Path{Kind: PathRelay, ViaName: "hub1", Reason: "no direct handshake for 20 s; their NAT maps per destination"}, "relay hub1 (no direct handshake for 20 s; their NAT maps per destination)"},
		{Path{Kind: PathNone, Reason: "hub1 unreachable"}, "none (hub1 unreachable)"},
	} {
		if got := c.p.String(); got != c.want {
			t.Errorf("%q, want %q", got, c.want)
		}
	}
}

func TestCandidates(t *testing.T) {
	ap := netip.MustParseAddrPort
	theirs := []netip.AddrPort{ap("198.51.100.3:51820"), ap("192.168.1.3:51820"), ap("[2001:db8::3]:51820")}
	got := candidates(theirs, []netip.AddrPort{ap("192.168.1.2:51820")}, []netip.AddrPort{ap("198.51.100.9:51820")})
	if fmt.Sprint(got) != "[198.51.100.3:51820 192.168.1.3:51820]" {
		t.Errorf("other NAT: %v", got)
	}
	// Behind the same public address: local first.
	got = candidates(theirs, []netip.AddrPort{ap("192.168.1.2:51820")}, []netip.AddrPort{ap("198.51.100.3:51820")})
	if fmt.Sprint(got) != "[192.168.1.3:51820 198.51.100.3:51820]" {
		t.Errorf("same NAT: %v", got)
	}
}
