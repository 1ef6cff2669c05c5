package wg

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// TestRelayMembersThroughHub: two members that route each other's /128
// through the hub (the relay path of mesh/path.go) reach each other once
// the hub relays, with nothing handed to the hub's kernel; without
// SetRelay the hub's kernel gets the packet. A direct handshake probe
// (Handshake) to a member that is only relayed still completes.
func TestRelayMembersThroughHub(t *testing.T) {
	a, hub, b := udpNode(t, 1), udpNode(t, 2), udpNode(t, 3)
	aAddr, bAddr := netip.PrefixFrom(a.addr, 128), netip.PrefixFrom(b.addr, 128)
	// Each member keeps the other as a peer without AllowedIPs (the
	// direct path being probed) and routes its /128 through the hub.
	mustApplyAny(t, a, hub.asPeer(bAddr), Peer{PublicKey: b.key.PublicKey(), Endpoint: b.ep})
	mustApplyAny(t, b, hub.asPeer(aAddr), Peer{PublicKey: a.key.PublicKey(), Endpoint: a.ep})
	mustApplyAny(t, hub, a.asPeer(), b.asPeer())

	a.tun.Outbound <- ipv6(a.addr, b.addr, []byte("to kernel"))
	if got, ok := recv(t, hub, 10*time.Second); !ok || !bytes.Contains(got, []byte("to kernel")) {
		t.Fatalf("hub kernel got %x, %v", got, ok)
	}
	hub.dev.SetRelay(true)
	a.tun.Outbound <- ipv6(a.addr, b.addr, []byte("ping"))
	if got, ok := recv(t, b, 10*time.Second); !ok || !bytes.Contains(got, []byte("ping")) || got[7] != 63 {
		t.Fatalf("b got %x, %v", got, ok)
	}
	b.tun.Outbound <- ipv6(b.addr, a.addr, []byte("pong"))
	if got, ok := recv(t, a, 10*time.Second); !ok || !bytes.Contains(got, []byte("pong")) {
		t.Fatalf("a got %x, %v", got, ok)
	}
	// The hub's own traffic still goes to its kernel.
	a.tun.Outbound <- ipv6(a.addr, hub.addr, []byte("to hub"))
	if got, ok := recv(t, hub, 10*time.Second); !ok || !bytes.Contains(got, []byte("to hub")) {
		t.Fatalf("hub kernel got %x, %v", got, ok)
	}
	// Phones and relaying share the forward set: changing one keeps the other.
	hub.dev.SetForward(nil)
	if st := hub.dev.ForwardStats(); st.Forwarded != 2 {
		t.Errorf("ForwardStats %+v, want 2 forwarded", st)
	}
	a.tun.Outbound <- ipv6(a.addr, b.addr, []byte("still relayed"))
	if got, ok := recv(t, b, 10*time.Second); !ok || !bytes.Contains(got, []byte("still relayed")) {
		t.Fatalf("after SetForward(nil) b got %x, %v", got, ok)
	}

	// The direct probe: a handshake with b's own peer.
	if err := a.dev.Handshake(b.key.PublicKey()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		peers, err := a.dev.Peers()
		if err != nil {
			t.Fatal(err)
		}
		done := false
		for _, p := range peers {
			done = done || (p.PublicKey == b.key.PublicKey() && !p.LastHandshake.IsZero())
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no direct handshake with b after Handshake")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := a.dev.Handshake(a.key.PublicKey()); err == nil {
		t.Error("Handshake with an unknown peer: no error")
	}
}
