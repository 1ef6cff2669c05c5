package memtransport

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func addr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(i)}), 7946)
}

func bind(t *testing.T, n *Network, i int) *Transport {
	t.Helper()
	tr, err := n.Bind(addr(i))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown() })
	return tr
}

func send(t *testing.T, from *Transport, to int, msg string) {
	t.Helper()
	if _, err := from.WriteTo([]byte(msg), addr(to).String()); err != nil {
		t.Fatal(err)
	}
}

// queued drains what is in tr's inbox now. With zero latency delivery
// happens inside WriteTo, so this is exact.
func queued(tr *Transport) []string {
	var out []string
	for {
		select {
		case p := <-tr.PacketCh():
			out = append(out, string(p.Buf))
		default:
			return out
		}
	}
}

func recv(t *testing.T, tr *Transport, timeout time.Duration) *memberlist.Packet {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		return p
	case <-time.After(timeout):
		t.Fatalf("%s received nothing within %s", tr.Addr(), timeout)
		return nil
	}
}

func TestPacketFromIsSenderAddress(t *testing.T) {
	n := New(Config{})
	a, b := bind(t, n, 1), bind(t, n, 2)
	send(t, a, 2, "hello")
	p := recv(t, b, time.Second)
	from, ok := p.From.(*net.UDPAddr)
	if !ok || from.AddrPort().String() != a.Addr().String() || string(p.Buf) != "hello" {
		t.Fatalf("got %q from %v, want hello from %s", p.Buf, p.From, a.Addr())
	}
	if _, err := n.Bind(addr(1)); !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("second bind on %s: %v, want ErrAddrInUse", addr(1), err)
	}
}

func TestLossRateWithinBounds(t *testing.T) {
	const packets, rate = 20000, 0.1
	lost := func(seed uint64) uint64 {
		n := New(Config{Loss: rate, Seed: seed, InboxDepth: packets})
		a, b := bind(t, n, 1), bind(t, n, 2)
		for range packets {
			send(t, a, 2, "x")
		}
		got := uint64(len(queued(b)))
		c := a.Counters()
		if c.PacketsSent != packets || c.PacketsLost+got != packets || b.Counters().PacketsReceived != got {
			t.Fatalf("counters: sender %+v, receiver got %d", c, got)
		}
		return c.PacketsLost
	}
	l := lost(42)
	// Binomial(20000, 0.1): mean 2000, σ ≈ 42; ±5σ.
	if l < 1790 || l > 2210 {
		t.Fatalf("lost %d of %d at rate %.2f, want 1790..2210", l, packets, rate)
	}
	if again := lost(42); again != l {
		t.Fatalf("seed 42 lost %d, then %d: not deterministic", l, again)
	}
	if other := lost(7); other == l {
		t.Logf("seeds 42 and 7 lost the same number (%d): possible, unlikely", l)
	}
}

func TestPartitionBlocksBothWays(t *testing.T) {
	n := New(Config{})
	a, b, c := bind(t, n, 1), bind(t, n, 2), bind(t, n, 3)
	heal := n.Partition([]netip.Addr{a.Addr().Addr()})

	send(t, a, 2, "a→b")
	send(t, b, 1, "b→a")
	send(t, b, 3, "b→c")
	if got := queued(b); len(got) != 0 {
		t.Fatalf("b received %q across the partition", got)
	}
	if got := queued(a); len(got) != 0 {
		t.Fatalf("a received %q across the partition", got)
	}
	if got := queued(c); len(got) != 1 {
		t.Fatalf("c received %q from b, same side: want one packet", got)
	}
	for _, d := range []struct {
		from *Transport
		to   int
	}{{a, 2}, {b, 1}} {
		start := time.Now()
		_, err := d.from.DialTimeout(addr(d.to).String(), 50*time.Millisecond)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("dial %s → %s across the partition: %v, want a timeout", d.from.Addr(), addr(d.to), err)
		}
		if el := time.Since(start); el < 50*time.Millisecond {
			t.Fatalf("dial into the partition gave up after %s, before its timeout", el)
		}
	}
	if a.Counters().PacketsDropped != 1 || b.Counters().PacketsDropped != 1 {
		t.Fatalf("dropped: a %d, b %d, want 1 each", a.Counters().PacketsDropped, b.Counters().PacketsDropped)
	}

	heal()
	send(t, a, 2, "healed")
	if got := queued(b); len(got) != 1 || got[0] != "healed" {
		t.Fatalf("after heal b received %q, want [healed]", got)
	}
	dialPair(t, a, b) // fails the test if the dial does not go through
}

func TestPartitionStallsOpenStream(t *testing.T) {
	n := New(Config{})
	a, b := bind(t, n, 1), bind(t, n, 2)
	client, server := dialPair(t, a, b)
	n.Partition([]netip.Addr{b.Addr().Addr()})
	if _, err := client.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := server.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read across a partition: %v, want the deadline", err)
	}
}

func TestKillSilencesBothWays(t *testing.T) {
	n := New(Config{})
	a, b := bind(t, n, 1), bind(t, n, 2)
	n.Kill(a.Addr().Addr())
	send(t, a, 2, "from the dead")
	send(t, b, 1, "to the dead")
	if got := queued(b); len(got) != 0 {
		t.Fatalf("b received %q from a killed member", got)
	}
	if got := queued(a); len(got) != 0 {
		t.Fatalf("a killed member received %q", got)
	}
	if c := a.Counters(); c.PacketsSent != 0 {
		t.Fatalf("a killed member counted %d packets sent", c.PacketsSent)
	}
	if _, err := b.DialTimeout(addr(1).String(), 30*time.Millisecond); err == nil || !err.(net.Error).Timeout() {
		t.Fatalf("dial to a killed member: %v, want a timeout (no reset)", err)
	}
	n.Revive(a.Addr().Addr())
	send(t, b, 1, "back")
	if got := queued(a); len(got) != 1 {
		t.Fatalf("revived member received %q, want one packet", got)
	}
}

func TestDialUnboundIsRefusedAtOnce(t *testing.T) {
	n := New(Config{})
	a, b := bind(t, n, 1), bind(t, n, 2)
	b.Shutdown()
	_, err := a.DialTimeout(addr(2).String(), time.Hour)
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("dial to a shut-down member: %v, want refused", err)
	}
	send(t, a, 2, "nobody")
	if c := a.Counters(); c.PacketsDropped != 1 {
		t.Fatalf("packet to nobody: %+v, want one dropped", c)
	}
}

func TestPacketLatencyAtLeastConfigured(t *testing.T) {
	const latency, jitter = 20 * time.Millisecond, 5 * time.Millisecond
	n := New(Config{Latency: latency, Jitter: jitter, Seed: 1})
	a, b := bind(t, n, 1), bind(t, n, 2)
	for range 20 {
		start := time.Now()
		send(t, a, 2, "ping")
		p := recv(t, b, time.Second)
		if d := p.Timestamp.Sub(start); d < latency-jitter {
			t.Fatalf("packet took %s, configured %s ± %s", d, latency, jitter)
		}
	}
}

func dialPair(t *testing.T, a, b *Transport) (client, server net.Conn) {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	go func() { accepted <- <-b.StreamCh() }()
	client, err := a.DialTimeout(b.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestStreamLatencyOrderAndClose(t *testing.T) {
	const latency, jitter = 15 * time.Millisecond, 10 * time.Millisecond
	n := New(Config{Latency: latency, Jitter: jitter, Seed: 3})
	a, b := bind(t, n, 1), bind(t, n, 2)

	start := time.Now()
	client, server := dialPair(t, a, b)
	if d := time.Since(start); d < 2*latency {
		t.Fatalf("dial took %s, want at least a round trip (%s)", d, 2*latency)
	}
	if got, want := server.RemoteAddr().String(), a.Addr().String(); got != want {
		t.Fatalf("server sees the dialler as %s, want %s", got, want)
	}

	start = time.Now()
	for i := range 50 {
		if _, err := client.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	client.Close()
	got, err := io.ReadAll(server)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < latency-jitter {
		t.Fatalf("first bytes after %s, configured %s ± %s", d, latency, jitter)
	}
	for i, c := range got {
		if int(c) != i {
			t.Fatalf("stream reordered: byte %d is %d (%v)", i, c, got)
		}
	}
	if len(got) != 50 {
		t.Fatalf("read %d bytes, wrote 50", len(got))
	}
	if _, err := server.Write([]byte("late")); err == nil {
		t.Fatal("write to a closed peer succeeded")
	}
	if c := a.Counters(); c.StreamsDialled != 1 || c.StreamBytesSent != 50 || b.Counters().StreamBytesReceived != 50 {
		t.Fatalf("stream counters: dialler %+v, receiver %+v", c, b.Counters())
	}
}

func TestStreamReadDeadline(t *testing.T) {
	n := New(Config{})
	a, b := bind(t, n, 1), bind(t, n, 2)
	client, server := dialPair(t, a, b)
	done := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 1))
		done <- err
	}()
	server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked read after a deadline was set: %v, want the deadline", err)
	}
	server.SetReadDeadline(time.Time{})
	client.Write([]byte("z"))
	buf := make([]byte, 1)
	if _, err := server.Read(buf); err != nil || buf[0] != 'z' {
		t.Fatalf("read after clearing the deadline: %q, %v", buf, err)
	}
}
