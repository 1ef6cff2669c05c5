package wg

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestCutOffSetRule(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	addr := netip.MustParseAddr("fd5e:1e0b:77aa::5")
	for _, tc := range []struct {
		name string
		m    MemberHealth
		cut  bool
	}{
		{"alive, never handshook", MemberHealth{}, false},
		{"alive, stale handshake, probe unanswered", MemberHealth{LastHandshake: ago(time.Hour), ProbeSent: ago(time.Minute)}, false},
		{"alive and revoked", MemberHealth{Revoked: true, LastHandshake: ago(time.Second)}, true},
		{"revoked regardless of a fresh handshake", MemberHealth{Revoked: true, GossipDead: true, LastHandshake: now, ProbeSent: ago(time.Minute)}, true},
		{"gossip dead but fresh handshake", MemberHealth{GossipDead: true, LastHandshake: ago(2 * time.Second)}, false},
		{"gossip dead, fresh handshake, old probe", MemberHealth{GossipDead: true, LastHandshake: ago(2 * time.Second), ProbeSent: ago(time.Minute)}, false},
		{"gossip dead, stale handshake, not probed", MemberHealth{GossipDead: true, LastHandshake: ago(time.Hour)}, false},
		{"gossip dead, never handshook, not probed", MemberHealth{GossipDead: true}, false},
		{"gossip dead, stale handshake, probe just sent", MemberHealth{GossipDead: true, LastHandshake: ago(time.Hour), ProbeSent: ago(ProbeGrace - time.Second)}, false},
		{"dead + stale handshake + probe unanswered", MemberHealth{GossipDead: true, LastHandshake: ago(time.Hour), ProbeSent: ago(ProbeGrace)}, true},
		{"dead + never handshook + probe unanswered", MemberHealth{GossipDead: true, ProbeSent: ago(time.Minute)}, true},
		{"dead, probe answered (handshake after it)", MemberHealth{GossipDead: true, LastHandshake: ago(30 * time.Second), ProbeSent: ago(40 * time.Second)}, false},
		{"dead, handshake at the probe instant", MemberHealth{GossipDead: true, LastHandshake: ago(time.Minute), ProbeSent: ago(time.Minute)}, false},
		{"dead, probe in the future (clock stepped back)", MemberHealth{GossipDead: true, ProbeSent: now.Add(time.Hour)}, false},
		{"dead, handshake in the future (clock stepped back)", MemberHealth{GossipDead: true, LastHandshake: now.Add(time.Hour), ProbeSent: ago(time.Minute)}, false},
		{"no address", MemberHealth{Revoked: true, Addr: netip.Addr{}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			if tc.name != "no address" {
				m.Addr = addr
			}
			got := CutOffSet([]MemberHealth{m}, now)
			if cut := len(got) == 1; cut != tc.cut || (cut && got[0] != addr) {
				t.Fatalf("CutOffSet(%+v) = %v, want cut=%v", m, got, tc.cut)
			}
		})
	}

	// Sorted, deduplicated, unmapped; the others untouched.
	a, b := netip.MustParseAddr("fd5e:1e0b:77aa::9"), netip.MustParseAddr("fd5e:1e0b:77aa::3")
	got := CutOffSet([]MemberHealth{
		{Addr: a, Revoked: true},
		{Addr: netip.MustParseAddr("fd5e:1e0b:77aa::4"), GossipDead: true},
		{Addr: b, GossipDead: true, ProbeSent: ago(time.Minute)},
		{Addr: a, Revoked: true},
		{Addr: netip.MustParseAddr("::ffff:10.0.0.1"), Revoked: true},
	}, now)
	if want := []netip.Addr{netip.MustParseAddr("10.0.0.1"), b, a}; !slices.Equal(got, want) {
		t.Fatalf("CutOffSet = %v, want %v", got, want)
	}
}

// A false "dead" from gossip about a live peer: the probe ProbeDead asks
// for is answered by WireGuard, so the member is not cut off however long
// gossip insists. A peer that does not answer is cut off after ProbeGrace.
// Both with real wireguard-go handshakes over the in-memory bind; the clock
// passed to CutOffSet is moved instead of waiting ProbeGrace.
func TestProbeDeadTellsLiveFromDead(t *testing.T) {
	setup := func(t *testing.T, bAlive bool) (*node, *node, func(map[wgtypes.Key]time.Time) MemberHealth) {
		a, b := pair(t)
		mustApply(t, a, Changes{Added: 1}, b.asPeer())
		if bAlive {
			mustApply(t, b, Changes{Added: 1}, a.asPeer())
		} // else b does not know a and ignores its initiations, as a dead node would
		return a, b, func(probes map[wgtypes.Key]time.Time) MemberHealth {
			return MemberHealth{Addr: b.addr, GossipDead: true, LastHandshake: peerOf(t, a, b).LastHandshake, ProbeSent: probes[b.key.PublicKey()]}
		}
	}

	t.Run("dead", func(t *testing.T) {
		a, b, health := setup(t, false)
		bKey := b.key.PublicKey()
		probes, err := a.dev.ProbeDead([]wgtypes.Key{bKey})
		if err != nil {
			t.Fatal(err)
		}
		sent := probes[bKey]
		if sent.IsZero() {
			t.Fatalf("no probe started: %v", probes)
		}
		if again, _ := a.dev.ProbeDead([]wgtypes.Key{bKey}); !again[bKey].Equal(sent) {
			t.Fatalf("outstanding probe restarted: %v -> %v", sent, again[bKey])
		}
		if got := CutOffSet([]MemberHealth{health(probes)}, sent.Add(ProbeGrace-time.Millisecond)); len(got) != 0 {
			t.Fatalf("cut off before ProbeGrace: %v", got)
		}
		if got := CutOffSet([]MemberHealth{health(probes)}, sent.Add(ProbeGrace)); len(got) != 1 {
			t.Fatalf("unanswered probe: CutOffSet = %v, want b cut off", got)
		}
		if p, _ := a.dev.ProbeDead(nil); len(p) != 0 {
			t.Fatalf("probes kept for keys not passed: %v", p)
		}
	})

	t.Run("alive", func(t *testing.T) {
		a, b, health := setup(t, true)
		bKey := b.key.PublicKey()
		probes, err := a.dev.ProbeDead([]wgtypes.Key{bKey})
		if err != nil || probes[bKey].IsZero() {
			t.Fatalf("probe: %v %v", probes, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for peerOf(t, a, b).LastHandshake.IsZero() {
			if time.Now().After(deadline) {
				t.Fatal("live b never answered the probe")
			}
			time.Sleep(10 * time.Millisecond)
		}
		h := health(probes)
		for _, later := range []time.Duration{ProbeGrace, time.Hour} {
			if got := CutOffSet([]MemberHealth{h}, probes[bKey].Add(later)); len(got) != 0 {
				t.Fatalf("live member cut off %v after an answered probe: %v (%+v)", later, got, h)
			}
		}
		// With the handshake fresh, ProbeDead leaves it alone.
		if p, _ := a.dev.ProbeDead([]wgtypes.Key{bKey}); len(p) != 0 {
			t.Fatalf("probe kept for a peer that just handshook: %v", p)
		}
	})
}
