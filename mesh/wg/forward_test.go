package wg

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// udpNode is a device on a real loopback UDP bind (no root needed), for
// tests with more than the two nodes bindtest can connect.
func udpNode(t *testing.T, last byte) *node {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{
		tun:  tuntest.NewChannelTUN(),
		key:  k,
		addr: netip.AddrFrom16([16]byte{0xfd, 0x5e, 0x1e, 0x0b, 0x77, 0xaa, 15: last}),
		ep:   netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)),
	}
	cfg, err := Config{Name: "f" + string(rune('a'+last)), PrivateKey: k, Address: n.addr, Prefix: testPrefix,
		ListenPort: port, Logger: slog.New(slog.DiscardHandler)}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	n.dev, err = newDevice(n.tun.TUN(), conn.NewStdNetBind(), cfg, cfg.Logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.dev.Close() })
	return n
}

// recv waits for a packet on n's TUN (what wireguard-go hands the kernel).
func recv(t *testing.T, n *node, timeout time.Duration) ([]byte, bool) {
	t.Helper()
	select {
	case p := <-n.tun.Inbound:
		return p, true
	case <-time.After(timeout):
		return nil, false
	}
}

// TestForwardPhoneThroughHub: a phone that peers only with the hub
// (AllowedIPs = the whole mesh prefix, as its wg-quick config says) reaches
// a member through the hub, and the member's reply reaches the phone, with
// nothing handed to the hub's kernel and the hop limit decremented once.
// Without SetForward the hub's kernel gets the packet (and, with IPv6
// forwarding off, would drop it).
func TestForwardPhoneThroughHub(t *testing.T) {
	phone, hub, member := udpNode(t, 1), udpNode(t, 2), udpNode(t, 3)
	phoneAsPeer := Peer{PublicKey: phone.key.PublicKey(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(phone.addr, 128)}}
	mustApplyAny(t, phone, Peer{PublicKey: hub.key.PublicKey(), Endpoint: hub.ep, AllowedIPs: []netip.Prefix{testPrefix}, PersistentKeepalive: time.Second})
	mustApplyAny(t, hub, phoneAsPeer, member.asPeer())
	// The member routes the phone's /128 through the hub's peer entry.
	mustApplyAny(t, member, hub.asPeer(netip.PrefixFrom(phone.addr, 128)))

	// Not forwarding: the hub's kernel gets the phone's packet.
	phone.tun.Outbound <- ipv6(phone.addr, member.addr, []byte("to kernel"))
	if got, ok := recv(t, hub, 10*time.Second); !ok || !bytes.Contains(got, []byte("to kernel")) {
		t.Fatalf("hub kernel got %x, %v", got, ok)
	}

	hub.dev.SetForward([]netip.Addr{phone.addr})
	if st := hub.dev.ForwardStats(); st.Phones != 1 || st.Mode != "pump" {
		t.Errorf("ForwardStats %+v", st)
	}
	ping := ipv6(phone.addr, member.addr, []byte("ping"))
	phone.tun.Outbound <- ping
	got, ok := recv(t, member, 10*time.Second)
	if !ok {
		t.Fatal("the member got nothing through the hub")
	}
	want := bytes.Clone(ping)
	want[7]-- // one hop
	if !bytes.Equal(got, want) {
		t.Fatalf("member got %x, want %x", got, want)
	}
	pong := ipv6(member.addr, phone.addr, []byte("pong"))
	member.tun.Outbound <- pong
	if got, ok := recv(t, phone, 10*time.Second); !ok || !bytes.Contains(got, []byte("pong")) {
		t.Fatalf("phone got %x, %v", got, ok)
	}
	// The phone still talks to the hub itself through the kernel.
	phone.tun.Outbound <- ipv6(phone.addr, hub.addr, []byte("to hub"))
	if got, ok := recv(t, hub, 10*time.Second); !ok || !bytes.Contains(got, []byte("to hub")) {
		t.Fatalf("hub kernel got %x, %v", got, ok)
	}
	// Hop limit 1 is not forwarded.
	dying := ipv6(phone.addr, member.addr, []byte("dying"))
	dying[7] = 1
	phone.tun.Outbound <- dying
	if got, ok := recv(t, member, 500*time.Millisecond); ok {
		t.Fatalf("a packet with hop limit 1 was forwarded: %x", got)
	}
	if st := hub.dev.ForwardStats(); st.Forwarded != 2 || st.Dropped != 1 {
		t.Errorf("ForwardStats %+v, want 2 forwarded and 1 dropped", st)
	}
	// A member's packet to another member is not the hub's to forward.
	hub.dev.SetForward(nil)
	member.tun.Outbound <- ipv6(member.addr, phone.addr, []byte("no route"))
	if got, ok := recv(t, hub, 10*time.Second); !ok || !bytes.Contains(got, []byte("no route")) {
		t.Fatalf("after SetForward(nil) the hub kernel got %x, %v", got, ok)
	}
}

func mustApplyAny(t *testing.T, n *node, peers ...Peer) {
	t.Helper()
	if _, err := n.dev.Apply(peers); err != nil {
		t.Fatal(err)
	}
}

// TestForwardSetDecides pins which packets the hub forwards.
func TestForwardSetDecides(t *testing.T) {
	self := netip.MustParseAddr("fd5e:1e0b:77aa::1")
	phone := netip.MustParseAddr("fd5e:1e0b:77aa::99")
	other := netip.MustParseAddr("fd5e:1e0b:77aa::3")
	outside := netip.MustParseAddr("2001:db8::1")
	s := &forwardSet{self: self, prefix: testPrefix, phones: map[netip.Addr]struct{}{phone: {}}}
	for _, c := range []struct {
		src, dst netip.Addr
		want     bool
	}{
		{phone, other, true},
		{other, phone, true},
		{phone, self, false},    // the hub's own services: the kernel's
		{phone, outside, false}, // never out of the mesh
		{other, self, false},
		{other, netip.MustParseAddr("fd5e:1e0b:77aa::4"), false}, // member to member: not ours
		{phone, netip.MustParseAddr("ff02::1"), false},
	} {
		if got := s.forward(ipv6(c.src, c.dst, nil)); got != c.want {
			t.Errorf("%s → %s: forward %v, want %v", c.src, c.dst, got, c.want)
		}
	}
	v4 := make([]byte, 40)
	v4[0] = 0x45
	if s.forward(v4) || s.forward(nil) {
		t.Error("a non-IPv6 packet is forwarded")
	}
}
