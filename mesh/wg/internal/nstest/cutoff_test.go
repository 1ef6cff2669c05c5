package nstest

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/meshnode/meshnode/mesh/wg"
	"github.com/meshnode/meshnode/scripts/netns"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
)

// Three namespaces, a peered with b and c. b is killed (SIGKILL: no FIN,
// no RST, its TUN gone) while a holds a connection to it blocked in read,
// and a's peer for it is removed, as for a revoked member. The blocked read
// hangs; once b's address is cut off on a, it fails with ECONNRESET within
// a second, a new connect to b is refused at once, and a's connection to c
// on the same device keeps working and is not touched.
func TestCutOffResetsConnections(t *testing.T) {
	netnstest.RequireRoot(t)
	nsA, nsB, nsC := netnstest.New(t, "ca"), netnstest.New(t, "cb"), netnstest.New(t, "cc")
	netnstest.Veth(t, nsA, "10.231.1.1/24", nsB, "10.231.1.2/24")
	netnstest.Veth(t, nsA, "10.231.2.1/24", nsC, "10.231.2.2/24")
	var hs []*holder
	for _, x := range []struct {
		ns *netns.NS
		i  byte
	}{{nsA, 1}, {nsB, 2}, {nsC, 3}} {
		h, err := start(t, x.ns, netns.Unique("wg"), genKey(t), overlay(x.i), prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(wg.SocketPath(h.iface)) })
		hs = append(hs, h)
	}
	a, b, c := hs[0], hs[1], hs[2]
	a.apply(asPeer(b, "10.231.1.2"), asPeer(c, "10.231.2.2"))
	b.apply(asPeer(a, "10.231.1.1"))
	c.apply(asPeer(a, "10.231.2.1"))

	const port = 7000
	b.listen(netip.AddrPortFrom(b.addr, port))
	c.listen(netip.AddrPortFrom(c.addr, port))
	toB, failed, _ := a.dial(netip.AddrPortFrom(b.addr, port))
	if failed != "" {
		t.Fatalf("dial b: %s", failed)
	}
	toC, failed, _ := a.dial(netip.AddrPortFrom(c.addr, port))
	if failed != "" {
		t.Fatalf("dial c: %s", failed)
	}
	for _, conn := range []int{toB, toC} {
		if failed := a.echo(conn); failed != "" {
			t.Fatalf("echo on connection %d: %s", conn, failed)
		}
	}

	a.block(toB)
	b.kill()
	a.apply(asPeer(c, "10.231.2.2"))
	// The problem: nothing tells a's socket that b is gone.
	if how, _ := a.await(toB, time.Second); how != "still blocked" {
		t.Fatalf("read from killed b ended by itself (%s); this test would prove nothing", how)
	}

	a.cutoff(b.addr)
	how, after := a.await(toB, 5*time.Second)
	t.Logf("blocked read on the connection to b failed with %s %v after SetCutOff", how, after)
	if how != "ECONNRESET" || after > time.Second {
		t.Fatalf("blocked read after cutoff: %s after %v, want ECONNRESET within 1s", how, after)
	}
	_, failed, after = a.dial(netip.AddrPortFrom(b.addr, port))
	t.Logf("new connect to b failed with %s %v after SetCutOff", failed, after)
	if failed != "ECONNREFUSED" || after > 2*time.Second {
		t.Fatalf("dial b after cutoff: %q after %v, want ECONNREFUSED at once", failed, after)
	}

	if failed := a.echo(toC); failed != "" {
		t.Fatalf("connection to live c broken by cutting off b: %s", failed)
	}
	s := a.stats()
	t.Logf("cut-off stats on a: %+v", s)
	if s.Addrs != 1 || s.Probes != 1 || s.Resets < 2 {
		t.Fatalf("stats %+v: want 1 address, 1 probe (the connection to b only), at least 2 resets (challenge ACK, SYN)", s)
	}

	// Leaving the set gives the path back; c was never affected.
	a.cutoff()
	if s := a.stats(); s.Addrs != 0 {
		t.Fatalf("stats after clearing: %+v", s)
	}
	if failed := a.echo(toC); failed != "" {
		t.Fatalf("echo to c after clearing: %s", failed)
	}
}
