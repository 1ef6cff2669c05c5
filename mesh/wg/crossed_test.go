package wg

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// TestCrossingDue pins the decision: only the lower key acts, only after
// the signature lasted crossedFor, at most once per uncrossEvery, and a
// peer that completed a handshake is forgotten.
func TestCrossingDue(t *testing.T) {
	lo, hi := wgtypes.Key{1}, wgtypes.Key{2}
	t0 := time.Unix(1_000_000, 0)
	crossed := PeerStats{PublicKey: hi, RxBytes: 148}
	for _, tc := range []struct {
		name  string
		self  wgtypes.Key
		steps []PeerStats // one per tick, 250 ms apart
		want  []int       // the ticks (indexes) at which hi is due
	}{
		{"lower key acts after crossedFor", lo, []PeerStats{crossed, crossed, crossed}, []int{2}},
		{"higher key never acts", wgtypes.Key{3}, []PeerStats{crossed, crossed, crossed, crossed}, nil},
		{"nothing heard: the peer is down, wireguard-go retries", lo,
			[]PeerStats{{PublicKey: hi}, {PublicKey: hi}, {PublicKey: hi}}, nil},
		{"a session: not crossed", lo,
			[]PeerStats{{PublicKey: hi, RxBytes: 148, LastHandshake: t0}, {PublicKey: hi, RxBytes: 300, LastHandshake: t0}, {PublicKey: hi, RxBytes: 400, LastHandshake: t0}}, nil},
		{"a handshake in flight completes: never due", lo,
			[]PeerStats{crossed, {PublicKey: hi, RxBytes: 240, LastHandshake: t0}, crossed, crossed}, nil},
		{"once per uncrossEvery", lo,
			// ticks 0..24 are 0-6 s: due at 0.5 s and again at 5.5 s
			repeat(crossed, 25), []int{2, 22}},
		{"uncrossTries times for good", lo,
			// 0-20 s: 0.5, 5.5, 10.5 s, then never (the peer went away)
			repeat(crossed, 81), []int{2, 22, 42}},
		{"a new spell starts over", lo,
			append(append(repeat(crossed, 43), PeerStats{PublicKey: hi}), repeat(crossed, 3)...), []int{2, 22, 42, 46}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c crossing
			var got []int
			for i, p := range tc.steps {
				due := c.due(tc.self, []PeerStats{p}, t0.Add(time.Duration(i)*250*time.Millisecond))
				if len(due) > 1 || len(due) == 1 && due[0] != hi {
					t.Fatalf("tick %d: due %v", i, due)
				}
				if len(due) == 1 {
					got = append(got, i)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("due at ticks %v, want %v", got, tc.want)
			}
		})
	}
	// A peer that left the device is forgotten.
	var c crossing
	c.due(lo, []PeerStats{crossed}, t0)
	c.due(lo, nil, t0.Add(time.Second))
	if len(c.since) != 0 || len(c.kicked) != 0 || len(c.tries) != 0 {
		t.Errorf("after the peer left: since %v kicked %v tries %v", c.since, c.kicked, c.tries)
	}
}

func repeat(p PeerStats, n int) []PeerStats {
	out := make([]PeerStats, n)
	for i := range out {
		out[i] = p
	}
	return out
}

// TestCrossedHandshake makes two real devices cross their handshakes, the
// way two nodes started together do: a relay between them holds both
// initiations, delivers them together, then holds and delivers both
// responses. Each device consumed the other's initiation (RxBytes > 0) and
// dropped the response to its own, so neither has a session, and
// wireguard-go alone would send nothing for 5 s. Uncross on both ends
// breaks it at once, from the lower key's end only.
func TestCrossedHandshake(t *testing.T) {
	a, b := udpNode(t, 1), udpNode(t, 2)
	r := newHoldRelay(t, a.ep, b.ep)
	// No keepalive: only the test's Handshake calls initiate.
	mustApplyAny(t, a, Peer{PublicKey: b.key.PublicKey(), Endpoint: r.toB, AllowedIPs: []netip.Prefix{netip.PrefixFrom(b.addr, 128)}})
	mustApplyAny(t, b, Peer{PublicKey: a.key.PublicKey(), Endpoint: r.toA, AllowedIPs: []netip.Prefix{netip.PrefixFrom(a.addr, 128)}})

	if err := a.dev.Handshake(b.key.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if err := b.dev.Handshake(a.key.PublicKey()); err != nil {
		t.Fatal(err)
	}
	r.waitHeld(t, 2, 1) // both initiations
	r.release(true)
	r.waitHeld(t, 2, 2) // both responses: each end consumed the other's initiation
	r.release(false)    // and from now on the relay passes everything

	crossedAt := time.Now()
	// The crossing itself (wireguard-go's doing, pinned): a second later
	// both ends heard the other and neither has a session.
	time.Sleep(time.Second)
	pa, pb := peerOf(t, a, b), peerOf(t, b, a)
	if !looksCrossed(pa) || !looksCrossed(pb) {
		t.Fatalf("no crossing: a→b %+v, b→a %+v", pa, pb)
	}

	// Uncross on both ends, two ticks crossedFor apart.
	lower, higher := a, b
	if ka, kb := a.key.PublicKey(), b.key.PublicKey(); bytes.Compare(ka[:], kb[:]) > 0 {
		lower, higher = b, a
	}
	now := time.Now()
	for _, tick := range []time.Time{now, now.Add(crossedFor)} {
		if got := higher.dev.Uncross([]PeerStats{peerOf(t, higher, lower)}, tick); len(got) != 0 {
			t.Fatalf("the higher key's end initiated: %v", got)
		}
		got := lower.dev.Uncross([]PeerStats{peerOf(t, lower, higher)}, tick)
		if tick.Equal(now) && len(got) != 0 || !tick.Equal(now) && (len(got) != 1 || got[0] != higher.key.PublicKey()) {
			t.Fatalf("lower key's Uncross at +%s: %v", tick.Sub(now), got)
		}
	}
	// Well before wireguard-go's own retry (5 s after the responses),
	// both ends have a session, and data passes.
	for {
		pa, pb = peerOf(t, a, b), peerOf(t, b, a)
		if !pa.LastHandshake.IsZero() && !pb.LastHandshake.IsZero() {
			break
		}
		if since := time.Since(crossedAt); since > 4*time.Second {
			t.Fatalf("no session %s after the crossing: a→b %+v, b→a %+v", since, pa, pb)
		}
		if pa.LastHandshake.IsZero() || pb.LastHandshake.IsZero() {
			// The responder's session starts with the initiator's
			// first data packet.
			a.tun.Outbound <- ipv6(a.addr, b.addr, []byte("after"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdRelay forwards UDP between two devices on loopback, and can hold
// what it receives until released: toB is a's endpoint for b, toA b's
// for a.
type holdRelay struct {
	toA, toB netip.AddrPort
	sa, sb   *net.UDPConn // sa faces a (a sends to it), sb faces b

	mu   sync.Mutex
	hold bool
	held []heldPacket
	cond *sync.Cond
}

type heldPacket struct {
	out  *net.UDPConn
	to   netip.AddrPort
	data []byte
}

func newHoldRelay(t *testing.T, a, b netip.AddrPort) *holdRelay {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	r := &holdRelay{sa: listen(), sb: listen(), hold: true}
	r.cond = sync.NewCond(&r.mu)
	r.toB = r.sa.LocalAddr().(*net.UDPAddr).AddrPort()
	r.toA = r.sb.LocalAddr().(*net.UDPAddr).AddrPort()
	go r.pump(r.sa, r.sb, b) // from a, out of sb to b
	go r.pump(r.sb, r.sa, a) // from b, out of sa to a
	return r
}

func (r *holdRelay) pump(in, out *net.UDPConn, to netip.AddrPort) {
	buf := make([]byte, 65536)
	for {
		n, err := in.Read(buf)
		if err != nil {
			return
		}
		p := heldPacket{out, to, bytes.Clone(buf[:n])}
		r.mu.Lock()
		if r.hold {
			r.held = append(r.held, p)
			r.cond.Broadcast()
			r.mu.Unlock()
			continue
		}
		r.mu.Unlock()
		out.WriteToUDPAddrPort(p.data, p.to)
	}
}

// waitHeld waits until n packets of WireGuard message type typ are held.
func (r *holdRelay) waitHeld(t *testing.T, n int, typ byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	go func() { time.Sleep(10 * time.Second); r.cond.Broadcast() }()
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		got := 0
		for _, p := range r.held {
			if p.data[0] == typ {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay holds %d packets of type %d, want %d", got, typ, n)
		}
		r.cond.Wait()
	}
}

// release sends what is held, and keeps holding new packets if hold.
func (r *holdRelay) release(hold bool) {
	r.mu.Lock()
	held := r.held
	r.held, r.hold = nil, hold
	r.mu.Unlock()
	for _, p := range held {
		p.out.WriteToUDPAddrPort(p.data, p.to)
	}
}
