package mesh

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/mesh/wg"
)

func TestJudgeDeath(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	grace, reask := defaults.NATSDeathProbeGrace, defaults.NATSDeathReask
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	tests := []struct {
		name     string
		e        deathEvidence
		want     deathVerdict
		wantAsk  bool
		wantWake time.Time
	}{
		{"cannot ask (relayed, no endpoint): gossip decides", deathEvidence{}, deathConfirmed, false, time.Time{}},
		{"cannot ask, even with a fresh handshake", deathEvidence{LastHandshake: ago(time.Second)}, deathConfirmed, false, time.Time{}},
		{"first look: ask, routes stay", deathEvidence{CanAsk: true}, deathPending, true, now.Add(grace)},
		{"first look after an old handshake: ask", deathEvidence{CanAsk: true, LastHandshake: ago(time.Minute)}, deathPending, true, now.Add(grace)},
		{"asked, within the grace", deathEvidence{CanAsk: true, Asked: ago(grace / 2)}, deathPending, false, ago(grace / 2).Add(grace)},
		{"asked, grace over, no answer: dead", deathEvidence{CanAsk: true, Asked: ago(grace)}, deathConfirmed, false, time.Time{}},
		{"asked, grace over, only a handshake from long before", deathEvidence{CanAsk: true, Asked: ago(2 * grace), LastHandshake: ago(time.Minute)}, deathConfirmed, false, time.Time{}},
		{"answered after the ask: alive", deathEvidence{CanAsk: true, Asked: ago(2 * time.Second), LastHandshake: ago(time.Second)}, deathRefuted, false, ago(2 * time.Second).Add(reask)},
		{"a handshake just before the ask is no answer to it", deathEvidence{CanAsk: true, Asked: ago(2 * grace), LastHandshake: ago(2*grace + time.Millisecond)}, deathConfirmed, false, time.Time{}},
		{"confirmed, then the member sends something: refuted again", deathEvidence{CanAsk: true, Asked: ago(time.Minute), RxAtAsk: 1000, Rx: 1032}, deathRefuted, true, now.Add(grace)},
		{"both sides asked at once: no handshake, but the peer's initiation arrived", deathEvidence{CanAsk: true, Asked: ago(2 * grace), RxAtAsk: 1000, Rx: 1148, LastHandshake: ago(time.Minute)}, deathRefuted, false, ago(2 * grace).Add(reask)},
		{"no bytes since the ask, grace over: dead", deathEvidence{CanAsk: true, Asked: ago(2 * grace), RxAtAsk: 1000, Rx: 1000, LastHandshake: ago(time.Minute)}, deathConfirmed, false, time.Time{}},
		{"refuted long ago, gossip still says dead: ask again", deathEvidence{CanAsk: true, Asked: ago(reask + time.Second), LastHandshake: ago(reask)}, deathRefuted, true, now.Add(grace)},
		{"asked in the future (clock stepped back): ask again", deathEvidence{CanAsk: true, Asked: now.Add(time.Hour)}, deathPending, true, now.Add(grace)},
		{"handshake in the future proves nothing", deathEvidence{CanAsk: true, Asked: ago(2 * grace), LastHandshake: now.Add(time.Hour)}, deathConfirmed, false, time.Time{}},
	}
	for _, tc := range tests {
		v, ask, wake := judgeDeath(tc.e, now)
		if v != tc.want || ask != tc.wantAsk || !wake.Equal(tc.wantWake) {
			t.Errorf("%s: judgeDeath = %v, ask %v, wake %v; want %v, ask %v, wake %v", tc.name, v, ask, wake, tc.want, tc.wantAsk, tc.wantWake)
		}
	}
}

// fakeAsker records the members asked; keys in fail cannot be asked.
type fakeAsker struct {
	asked []wgtypes.Key
	fail  map[wgtypes.Key]bool
}

func (f *fakeAsker) Ask(k wgtypes.Key, _ netip.Addr) error {
	if f.fail[k] {
		return errors.New("no endpoint")
	}
	f.asked = append(f.asked, k)
	return nil
}

// The witness over several reconciles, as a kill -9 and a false suspicion
// meet it: a member that answers keeps its routes for as long as it
// answers; one that does not loses them one grace after gossip gave up.
func TestDeathWitness(t *testing.T) {
	tm := newTestMesh(t)
	killed, _ := tm.member("killed", discovery.StateDead)
	gossipWrong, _ := tm.member("gossip-wrong", discovery.StateDead)
	relayed, _ := tm.member("relayed", discovery.StateLeft)
	noEndpoint, _ := tm.member("no-endpoint", discovery.StateDead)
	alive, _ := tm.member("alive", discovery.StateAlive)
	members := []discovery.Member{alive, gossipWrong, killed, noEndpoint, relayed}
	ep := netip.MustParseAddrPort("192.0.2.1:51820")
	peers := func(hs map[string]time.Time) []wg.PeerStats {
		var out []wg.PeerStats
		for _, m := range members {
			ps := wg.PeerStats{PublicKey: m.WireGuard.Key(), Endpoint: ep, LastHandshake: hs[m.Name]}
			if m.Name == "no-endpoint" {
				ps.Endpoint = netip.AddrPort{}
			}
			out = append(out, ps)
		}
		return out
	}
	paths := map[identity.NodePublic]Path{relayed.Node: {Kind: PathRelay}}
	dev := &fakeAsker{}
	log := slog.New(slog.DiscardHandler)
	var w deathWitness

	t0 := time.Unix(1_800_000_000, 0)
	keep, wake := w.judge(members, peers(nil), paths, dev, log, t0)
	if want := []identity.NodePublic{gossipWrong.Node, killed.Node}; !sameKeys(keep, want) {
		t.Fatalf("first look: keep %v, want the two direct dead members", keep)
	}
	if want := []wgtypes.Key{gossipWrong.WireGuard.Key(), killed.WireGuard.Key()}; !slices.Equal(dev.asked, want) {
		t.Fatalf("asked %v, want %v (the relayed and the unreachable member cannot be asked)", dev.asked, want)
	}
	if !wake.Equal(t0.Add(defaults.NATSDeathProbeGrace)) {
		t.Fatalf("wake %v, want one grace later", wake)
	}

	// The live one answers; the killed one does not.
	t1 := t0.Add(defaults.NATSDeathProbeGrace)
	keep, wake = w.judge(members, peers(map[string]time.Time{"gossip-wrong": t0.Add(3 * time.Millisecond)}), paths, dev, log, t1)
	if want := []identity.NodePublic{gossipWrong.Node}; !sameKeys(keep, want) {
		t.Fatalf("after the grace: keep %v, want only the member that answered", keep)
	}
	if w.refuted() != 1 {
		t.Fatalf("refuted = %d, want 1", w.refuted())
	}
	if want := t0.Add(defaults.NATSDeathReask); !wake.Equal(want) {
		t.Fatalf("wake %v, want the re-ask at %v", wake, want)
	}

	// Gossip still says dead; the answering member is asked again and
	// keeps its routes while it answers; then it dies for real.
	dev.asked = nil
	t2 := t0.Add(defaults.NATSDeathReask + 10*time.Millisecond)
	hs := map[string]time.Time{"gossip-wrong": t0.Add(3 * time.Millisecond)}
	if keep, _ = w.judge(members, peers(hs), paths, dev, log, t2); !keep[gossipWrong.Node] || len(dev.asked) != 1 {
		t.Fatalf("re-ask: keep %v, asked %v; want routes kept and one new ask", keep, dev.asked)
	}
	if keep, _ = w.judge(members, peers(hs), paths, dev, log, t2.Add(defaults.NATSDeathProbeGrace)); keep[gossipWrong.Node] {
		t.Fatal("a member that stops answering keeps its routes")
	}

	// Back alive in gossip: forgotten, and its next death is judged afresh.
	gossipWrong.State = discovery.StateAlive
	members[1] = gossipWrong
	w.judge(members, peers(hs), paths, dev, log, t2.Add(2*defaults.NATSDeathProbeGrace))
	if _, ok := w.asked[gossipWrong.Node]; ok {
		t.Fatal("a member alive again is still remembered as asked")
	}
	// A failed ask is a confirmed death (WireGuard cannot vouch).
	dev.fail = map[wgtypes.Key]bool{killed.WireGuard.Key(): true}
	var w2 deathWitness
	if keep, _ := w2.judge(members, peers(nil), paths, dev, log, t0); keep[killed.Node] {
		t.Fatal("a member WireGuard cannot ask keeps its routes")
	}
}

func sameKeys(m map[identity.NodePublic]bool, want []identity.NodePublic) bool {
	if len(m) != len(want) {
		return false
	}
	for _, k := range want {
		if !m[k] {
			return false
		}
	}
	return true
}

// The plan routes a gossip-dead member only while KeepRoutes holds it, and
// accepts its inbound routes for as long (Recheck would close them
// otherwise).
func TestPlanKeepRoutes(t *testing.T) {
	tm := newTestMesh(t)
	self, _ := tm.member("self", discovery.StateAlive)
	dead, certDead := tm.member("dead", discovery.StateDead)
	left, _ := tm.member("left", discovery.StateLeft)
	unknown, _ := tm.member("unknown", discovery.StateUnknown)
	members := []discovery.Member{dead, left, unknown}

	routes := func(p *Plan) []string {
		var out []string
		for _, r := range p.Routes {
			out = append(out, r.ServerName)
		}
		return out
	}
	gossipAlone := NewPlan(Snapshot{Self: selfOf(self, 6222), Members: members})
	if got := routes(gossipAlone); !slices.Equal(got, []string{"self"}) {
		t.Errorf("without KeepRoutes: routes %v, want self only", got)
	}
	if gossipAlone.AllowRoute(dead.Addr, certDead) {
		t.Error("without KeepRoutes: a dead member's route is accepted")
	}
	keep := map[identity.NodePublic]bool{dead.Node: true, left.Node: true, unknown.Node: true}
	kept := NewPlan(Snapshot{Self: selfOf(self, 6222), Members: members, KeepRoutes: keep})
	if got := routes(kept); !slices.Equal(got, []string{"self", "dead", "left"}) {
		t.Errorf("with KeepRoutes: routes %v, want self, dead, left (never an unknown member)", got)
	}
	if !kept.AllowRoute(dead.Addr, certDead) {
		t.Error("with KeepRoutes: the kept member's inbound route is refused")
	}
}

// Two members that ask each other at once: neither handshake completes
// (each initiation replaces the other's), but each peer's bytes arrive.
// Bytes received after the ask keep the routes.
func TestDeathWitnessCountsBytes(t *testing.T) {
	tm := newTestMesh(t)
	racer, _ := tm.member("racer", discovery.StateDead)
	ep := netip.MustParseAddrPort("192.0.2.1:51820")
	hs := time.Unix(1_799_999_990, 0) // before the death, no answer to the ask
	stats := func(rx int64) []wg.PeerStats {
		return []wg.PeerStats{{PublicKey: racer.WireGuard.Key(), Endpoint: ep, LastHandshake: hs, RxBytes: rx}}
	}
	dev := &fakeAsker{}
	log := slog.New(slog.DiscardHandler)
	var w deathWitness
	t0 := time.Unix(1_800_000_000, 0)
	members := []discovery.Member{racer}
	w.judge(members, stats(5000), nil, dev, log, t0)
	after := t0.Add(defaults.NATSDeathProbeGrace)
	if keep, _ := w.judge(members, stats(5148), nil, dev, log, after); !keep[racer.Node] {
		t.Fatal("a member whose initiation arrived after the ask lost its routes")
	}
	var w2 deathWitness
	w2.judge(members, stats(5000), nil, dev, log, t0)
	if keep, _ := w2.judge(members, stats(5000), nil, dev, log, after); keep[racer.Node] {
		t.Fatal("a member that sent nothing after the ask kept its routes")
	}
}
