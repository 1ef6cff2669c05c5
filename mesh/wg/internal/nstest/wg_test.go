package nstest

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/mesh/wg"
	"github.com/meshnode/meshnode/scripts/netns"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

var prefix = netip.MustParsePrefix("fd3c:9a41:5e07::/48")

func overlay(i byte) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0x3c, 0x9a, 0x41, 0x5e, 0x07, 8: 0x11, 15: i})
}

func genKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func asPeer(h *holder, underlay string) wg.Peer {
	return wg.Peer{
		PublicKey:  h.key.PublicKey(),
		Endpoint:   netip.AddrPortFrom(netip.MustParseAddr(underlay), wg.DefaultListenPort),
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(h.addr, 128)},
	}
}

// pingOK polls ping6 from ns to dst until it answers or the deadline passes.
func pingOK(t *testing.T, ns *netns.NS, dst netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := ns.Run("ping", "-6", "-n", "-c1", "-W1", dst.String())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping6 %s from %s never answered: %v\n%s", dst, ns.Name, err, out)
		}
	}
}

// pingFails checks that three pings in a row get no answer.
func pingFails(t *testing.T, ns *netns.NS, dst netip.Addr) {
	t.Helper()
	if out, err := ns.Run("ping", "-6", "-n", "-c3", "-i0.2", "-W1", dst.String()); err == nil {
		t.Fatalf("ping6 %s from %s answered, expected silence:\n%s", dst, ns.Name, out)
	}
}

func linkExists(t *testing.T, ns *netns.NS, iface string) bool {
	t.Helper()
	_, err := ns.Run("ip", "link", "show", "dev", iface)
	return err == nil
}

func socketExists(iface string) bool {
	_, err := os.Lstat(wg.SocketPath(iface))
	return err == nil
}

// Two namespaces over veth, one device holder in each: the overlay carries
// ping6, wg sees the peer, removing and re-adding the peer cuts and restores
// traffic, and Close leaves nothing behind.
func TestTwoNamespaces(t *testing.T) {
	netnstest.RequireRoot(t)
	wgBin := netnstest.RequireTool(t, "wg")
	netnstest.RequireTool(t, "ping")
	nsA, nsB := netnstest.New(t, "wa"), netnstest.New(t, "wb")
	netnstest.Veth(t, nsA, "10.231.0.1/24", nsB, "10.231.0.2/24")

	a, err := start(t, nsA, netns.Unique("wg"), genKey(t), overlay(1), prefix)
	if err != nil {
		t.Fatal(err)
	}
	b, err := start(t, nsB, netns.Unique("wg"), genKey(t), overlay(2), prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(wg.SocketPath(a.iface)); os.Remove(wg.SocketPath(b.iface)) })

	out, err := nsA.Run("ip", "-6", "route", "show", "dev", a.iface)
	if err != nil || !strings.Contains(out, prefix.String()) {
		t.Fatalf("mesh route on %s: %v\n%s", a.iface, err, out)
	}

	if ch := a.apply(asPeer(b, "10.231.0.2")); ch != (wg.Changes{Added: 1}) {
		t.Fatalf("a: first apply %v", ch)
	}
	if ch := b.apply(asPeer(a, "10.231.0.1")); ch != (wg.Changes{Added: 1}) {
		t.Fatalf("b: first apply %v", ch)
	}
	pingOK(t, nsA, b.addr)
	pingOK(t, nsB, a.addr)

	// The real wireguard-tools see the peer with a recent handshake.
	out, err = nsA.Run(wgBin, "show", a.iface, "latest-handshakes")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) != 2 || f[0] != b.key.PublicKey().String() {
		t.Fatalf("wg show %s latest-handshakes: want exactly peer %s, got:\n%s", a.iface, b.key.PublicKey(), out)
	}
	hs, _ := strconv.ParseInt(f[1], 10, 64)
	if age := time.Since(time.Unix(hs, 0)); hs == 0 || age > time.Minute || age < -time.Minute {
		t.Fatalf("wg show: handshake at %d (age %v) is not recent", hs, age)
	}
	out, err = nsA.Run(wgBin, "show", a.iface, "listen-port")
	if err != nil || strings.TrimSpace(out) != strconv.Itoa(wg.DefaultListenPort) {
		t.Fatalf("wg show listen-port: %q %v", out, err)
	}

	// So does wgctrl (it finds the interface through its UAPI socket).
	wc, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	wd, err := wc.Device(a.iface)
	if err != nil {
		t.Fatalf("wgctrl: %v", err)
	}
	if len(wd.Peers) != 1 || wd.Peers[0].PublicKey != b.key.PublicKey() || wd.PublicKey != a.key.PublicKey() {
		t.Fatalf("wgctrl sees %+v", wd)
	}

	// Our own stats agree.
	ps := a.peers()
	if len(ps) != 1 || ps[0].LastHandshake.IsZero() || ps[0].RxBytes == 0 || ps[0].TxBytes == 0 ||
		ps[0].Endpoint != netip.MustParseAddrPort("10.231.0.2:51820") {
		t.Fatalf("a.Peers: %+v", ps)
	}

	// Applying the same set again changes nothing and keeps the session.
	if ch := a.apply(asPeer(b, "10.231.0.2")); !ch.None() {
		t.Fatalf("a: second apply changed %v", ch)
	}
	if again := a.peers(); !again[0].LastHandshake.Equal(ps[0].LastHandshake) {
		t.Fatalf("no-op apply changed the handshake: %v -> %v", ps[0].LastHandshake, again[0].LastHandshake)
	}

	// Removing the peer stops the traffic; re-adding restores it.
	if ch := a.apply(); ch != (wg.Changes{Removed: 1}) {
		t.Fatalf("a: remove %v", ch)
	}
	if out, _ := nsA.Run(wgBin, "show", a.iface, "peers"); strings.TrimSpace(out) != "" {
		t.Fatalf("wg show peers after removal: %q", out)
	}
	pingFails(t, nsA, b.addr)
	if ch := a.apply(asPeer(b, "10.231.0.2")); ch != (wg.Changes{Added: 1}) {
		t.Fatalf("a: re-add %v", ch)
	}
	pingOK(t, nsA, b.addr)

	// Close removes interface and socket.
	for _, h := range []*holder{a, b} {
		h.close()
		if linkExists(t, h.ns, h.iface) {
			t.Errorf("interface %s still exists after Close", h.iface)
		}
		if socketExists(h.iface) {
			t.Errorf("socket %s still exists after Close", wg.SocketPath(h.iface))
		}
	}
}

// A holder killed with SIGKILL leaves its UAPI socket behind; the next Open
// of the same name cleans it up with a log line and comes up. A live holder
// is never displaced.
func TestCrashAndStaleState(t *testing.T) {
	netnstest.RequireRoot(t)
	wgBin := netnstest.RequireTool(t, "wg")
	ns := netnstest.New(t, "wc")
	iface := netns.Unique("wg")
	t.Cleanup(func() { os.Remove(wg.SocketPath(iface)) })
	key, addr := genKey(t), overlay(1)

	first, err := start(t, ns, iface, key, addr, prefix)
	if err != nil {
		t.Fatal(err)
	}

	// A second Open of a live interface fails, naming it, and takes nothing.
	_, err = start(t, ns, iface, genKey(t), overlay(2), prefix)
	if err == nil || !strings.Contains(err.Error(), iface) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open of live %s: err = %v", iface, err)
	}
	if out, err := ns.Run(wgBin, "show", iface, "public-key"); err != nil || strings.TrimSpace(out) != key.PublicKey().String() {
		t.Fatalf("after the refused Open, %s no longer answers as the first holder: %q %v", iface, out, err)
	}

	// Another interface on the same UDP port: a clear error, nothing left.
	other := netns.Unique("wg")
	_, err = start(t, ns, other, genKey(t), overlay(3), prefix)
	if err == nil || !strings.Contains(err.Error(), "listen port 51820") {
		t.Fatalf("second device on port 51820: err = %v", err)
	}
	if linkExists(t, ns, other) || socketExists(other) {
		t.Fatalf("failed Open of %s left its link or socket behind", other)
	}

	first.kill()
	if !socketExists(iface) {
		t.Fatalf("socket %s vanished with the killed holder; this test would not exercise stale cleanup", wg.SocketPath(iface))
	}

	second, err := start(t, ns, iface, key, addr, prefix)
	if err != nil {
		t.Fatalf("reopen after crash: %v\nstderr:\n%s", err, second.stderr)
	}
	if !strings.Contains(second.stderr.String(), "stale UAPI socket") {
		t.Errorf("no log line about the stale socket:\n%s", second.stderr)
	}
	if out, err := ns.Run(wgBin, "show", iface, "public-key"); err != nil || strings.TrimSpace(out) != key.PublicKey().String() {
		t.Fatalf("wg show after reopen: %q %v", out, err)
	}
	second.close()
	if linkExists(t, ns, iface) || socketExists(iface) {
		t.Fatalf("%s left behind after Close", iface)
	}

	// A persistent TUN nobody holds is a leftover: removed and replaced.
	if _, err := ns.Run("ip", "tuntap", "add", "dev", iface, "mode", "tun"); err != nil {
		t.Fatal(err)
	}
	third, err := start(t, ns, iface, key, addr, prefix)
	if err != nil {
		t.Fatalf("open over a leftover persistent TUN: %v", err)
	}
	if !strings.Contains(third.stderr.String(), "stale TUN") {
		t.Errorf("no log line about the stale TUN:\n%s", third.stderr)
	}
	third.close()
	if linkExists(t, ns, iface) {
		t.Fatalf("%s left behind after Close", iface)
	}

	// A link of another kind with the name is someone else's: refused.
	if _, err := ns.Run("ip", "link", "add", iface, "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	_, err = start(t, ns, iface, key, addr, prefix)
	if err == nil || !strings.Contains(err.Error(), iface) {
		t.Fatalf("Open over a bridge named %s: err = %v", iface, err)
	}
	if !linkExists(t, ns, iface) {
		t.Fatal("the refused Open deleted someone else's link")
	}
	if socketExists(iface) {
		t.Fatal("the refused Open left a socket behind")
	}
}
