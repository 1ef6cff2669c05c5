package wg

import (
	"bytes"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// kernelSend is a packet the "kernel" (the test) routes into a's TUN.
func kernelSend(t *testing.T, n *node, pkt []byte) {
	t.Helper()
	select {
	case n.tun.Outbound <- pkt:
	case <-time.After(10 * time.Second):
		t.Fatal("device did not read the packet from its TUN")
	}
}

// kernelReceive waits for the next packet written into n's TUN.
func kernelReceive(t *testing.T, n *node) []byte {
	t.Helper()
	select {
	case p := <-n.tun.Inbound:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("nothing written back into the TUN")
		return nil
	}
}

func noPacket(t *testing.T, n *node, what string) {
	t.Helper()
	select {
	case p := <-n.tun.Inbound:
		t.Fatalf("%s: unexpected packet %x", what, p)
	case <-time.After(200 * time.Millisecond):
	}
}

// Through a real wireguard-go device on an in-memory TUN: with b's
// address cut off on a, a's "kernel" gets resets for TCP to b, nothing
// reaches b, and traffic between a and b in the other direction, or to a
// not-cut-off address, is untouched.
func TestCutOffAnswersTCP(t *testing.T) {
	a, b := pair(t)
	mustApply(t, a, Changes{Added: 1}, b.asPeer())
	mustApply(t, b, Changes{Added: 1}, a.asPeer())
	send(t, a, b, "before")
	a.dev.connsTo = func([]netip.Addr) ([]tcpConn, error) { return nil, nil }

	a.dev.SetCutOff([]netip.Addr{b.addr, a.addr /* ignored: self */})
	if s := a.dev.CutOffStats(); s.Addrs != 1 {
		t.Fatalf("stats after SetCutOff: %+v", s)
	}
	me := netip.AddrPortFrom(a.addr, 40001)
	them := netip.AddrPortFrom(b.addr, 4222)

	// A connect: refused (RST|ACK acknowledging the SYN).
	kernelSend(t, a, tcpPacket(me, them, 1000, 0, tcpSYN, nil))
	src, dst, seq, ack, flags := checkReset(t, kernelReceive(t, a))
	if src != them || dst != me || seq != 0 || ack != 1001 || flags != tcpRST|tcpACK {
		t.Fatalf("reset for SYN: %s -> %s seq=%d ack=%d flags=%#x", src, dst, seq, ack, flags)
	}
	// An established connection sending data: reset at exactly its RCV.NXT.
	kernelSend(t, a, tcpPacket(me, them, 5000, 0x8000_0001, tcpACK|0x08, []byte("PING\r\n")))
	src, dst, seq, ack, flags = checkReset(t, kernelReceive(t, a))
	if src != them || dst != me || seq != 0x8000_0001 || ack != 0 || flags != tcpRST {
		t.Fatalf("reset for data: %s -> %s seq=%d ack=%d flags=%#x", src, dst, seq, ack, flags)
	}
	// Not TCP: dropped, no answer.
	kernelSend(t, a, ipv6(a.addr, b.addr, []byte("gossip")))
	// A reset from us to them: not answered.
	kernelSend(t, a, tcpPacket(me, them, 1, 2, tcpRST|tcpACK, nil))
	noPacket(t, a, "after a non-TCP packet and a RST to a cut-off address")
	select {
	case p := <-b.tun.Inbound:
		t.Fatalf("b received %x while cut off", p)
	default:
	}
	if s := a.dev.CutOffStats(); s.Resets != 2 || s.Dropped != 2 {
		t.Fatalf("stats: %+v, want 2 resets and 2 dropped", s)
	}

	// b -> a is not filtered (the filter sees only what a's kernel sends).
	send(t, b, a, "from the cut-off side")
	// Another address in the mesh, routed to b as a hub: untouched.
	hub := netip.MustParsePrefix("fd5e:1e0b:77aa:1::/64")
	mustApply(t, a, Changes{Updated: 1}, b.asPeer(hub))
	viaHub := tcpPacket(me, netip.AddrPortFrom(netip.MustParseAddr("fd5e:1e0b:77aa:1::9"), 4222), 1, 2, tcpACK, []byte("x"))
	kernelSend(t, a, viaHub)
	select {
	case got := <-b.tun.Inbound:
		if !bytes.Equal(got, viaHub) {
			t.Fatalf("b got %x, a sent %x", got, viaHub)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("packet to a not-cut-off address did not arrive")
	}

	// Leaving the set restores the path at once.
	a.dev.SetCutOff(nil)
	if s := a.dev.CutOffStats(); s.Addrs != 0 {
		t.Fatalf("stats after clearing: %+v", s)
	}
	send(t, a, b, "after")
}

// SetCutOff probes the connections open to a newly cut-off address, and
// only those, and only once.
func TestCutOffProbesOpenConnections(t *testing.T) {
	a, b := pair(t)
	other := netip.MustParseAddr("fd5e:1e0b:77aa::99")
	conn := tcpConn{local: netip.AddrPortFrom(a.addr, 40002), remote: netip.AddrPortFrom(b.addr, 6222)}
	var asked [][]netip.Addr
	a.dev.connsTo = func(addrs []netip.Addr) ([]tcpConn, error) {
		asked = append(asked, addrs)
		return []tcpConn{conn}, nil
	}
	done := make(chan struct{})
	go func() { a.dev.SetCutOff([]netip.Addr{b.addr}); close(done) }()
	src, dst, _, _, flags := checkReset(t, kernelReceive(t, a))
	if src != conn.remote || dst != conn.local || flags != tcpSYN {
		t.Fatalf("probe %s -> %s flags %#x", src, dst, flags)
	}
	<-done
	a.dev.SetCutOff([]netip.Addr{b.addr})         // unchanged: no probe
	a.dev.SetCutOff([]netip.Addr{b.addr, b.addr}) // the same set
	done = make(chan struct{})
	go func() { a.dev.SetCutOff([]netip.Addr{other, b.addr}); close(done) }()
	kernelReceive(t, a)
	<-done // the counter is bumped after the write returns
	if len(asked) != 2 || !slices.Equal(asked[0], []netip.Addr{b.addr}) || !slices.Equal(asked[1], []netip.Addr{other}) {
		t.Fatalf("connections asked for %v", asked)
	}
	if s := a.dev.CutOffStats(); s.Probes != 2 || s.Addrs != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// batchTUN is a tun.Device that returns whole batches, like the Linux TUN
// with offloads, and records what is written to it.
type batchTUN struct {
	tun.Device // nil: only Read and Write are called
	batches    chan [][]byte
	mu         sync.Mutex // guards written
	written    [][]byte
}

func (b *batchTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	batch := <-b.batches
	for i, p := range batch {
		sizes[i] = copy(bufs[i][offset:], p)
	}
	return len(batch), nil
}

func (b *batchTUN) Write(bufs [][]byte, offset int) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range bufs {
		if offset < 10 {
			panic("write without room for a virtio header")
		}
		b.written = append(b.written, append([]byte{}, p[offset:]...))
	}
	return len(bufs), nil
}

func readBufs(n int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	return bufs, make([]int, n)
}

// A batch with cut-off packets among others comes out compacted, in order;
// a batch that was all cut off is not returned empty.
func TestCutOffCompactsBatch(t *testing.T) {
	inner := &batchTUN{batches: make(chan [][]byte, 2)}
	ct := newCutoffTUN(inner)
	ct.replace([]netip.Addr{cut6.Addr()}, netip.Addr{})
	live := netip.MustParseAddrPort("[fd5e:1e0b:77aa::3]:4222")
	p := func(to netip.AddrPort, seq uint32) []byte {
		return tcpPacket(local6, to, seq, 1, tcpACK, []byte{byte(seq)})
	}
	inner.batches <- [][]byte{p(cut6, 1), p(cut6, 2)} // all cut: Read goes on to the next batch
	inner.batches <- [][]byte{p(cut6, 3), p(live, 4), p(cut6, 5), p(live, 6), p(live, 7), p(cut6, 8)}
	bufs, sizes := readBufs(8)
	const off = 16
	n, err := ct.Read(bufs, sizes, off)
	if err != nil || n != 3 {
		t.Fatalf("Read = %d, %v; want 3 packets", n, err)
	}
	for i, seq := range []uint32{4, 6, 7} {
		if got := bufs[i][off : off+sizes[i]]; !bytes.Equal(got, p(live, seq)) {
			t.Errorf("packet %d: %x, want seq %d", i, got, seq)
		}
	}
	if len(inner.written) != 5 {
		t.Fatalf("%d resets written, want 5", len(inner.written))
	}
	for i, r := range inner.written {
		if _, _, seq, _, _ := checkReset(t, r); seq != 1 {
			t.Errorf("reset %d: seq %d", i, seq)
		}
	}
}

// SetCutOff may run while wireguard-go reads: every packet is either passed
// on or answered, never both or neither, and the race detector sees no
// unsynchronised access (run with -race).
func TestCutOffSwapIsRaceFree(t *testing.T) {
	inner := &batchTUN{batches: make(chan [][]byte)}
	ct := newCutoffTUN(inner)
	const batches, perBatch = 300, 8
	go func() {
		for i := range batches {
			b := make([][]byte, perBatch)
			for j := range b {
				to := cut6
				if j%2 == 1 {
					to = netip.MustParseAddrPort("[fd5e:1e0b:77aa::3]:4222")
				}
				b[j] = tcpPacket(local6, to, uint32(i*perBatch+j), 1, tcpACK, nil)
			}
			inner.batches <- b
		}
		close(inner.batches)
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		sets := [][]netip.Addr{{cut6.Addr()}, nil, {cut6.Addr(), cut4.Addr()}, {}}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				ct.replace(sets[i%len(sets)], netip.Addr{})
				_ = ct.stats()
			}
		}
	})
	bufs, sizes := readBufs(perBatch)
	passed := 0
	for {
		// Half of every batch is never cut off, so only the closed
		// feeder (a nil batch) makes Read return 0.
		n, err := ct.Read(bufs, sizes, 16)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		passed += n
	}
	close(stop)
	wg.Wait()
	if got := passed + int(ct.resets.Load()); got != batches*perBatch || ct.dropped.Load() != 0 {
		t.Fatalf("passed %d + reset %d = %d, dropped %d; want %d packets accounted for once",
			passed, ct.resets.Load(), got, ct.dropped.Load(), batches*perBatch)
	}
}

// BenchmarkCutOffRead reads 128-packet batches (wireguard-go's batch size
// with the Linux TUN's offloads) of 1400-byte TCP packets: straight from
// the TUN, through the filter with nothing cut off (the cost every node
// pays), and with three addresses cut off that the batch does not go to.
// The fake TUN leaves the packets in place instead of copying them in, so
// what is measured is the filter, not a memmove that would hide it.
func BenchmarkCutOffRead(b *testing.B) {
	const perBatch = 128
	pkt := tcpPacket(local6, netip.MustParseAddrPort("[fd5e:1e0b:77aa::3]:4222"), 1, 1, tcpACK, make([]byte, 1340))
	src := &staticTUN{n: perBatch, size: len(pkt)}
	for _, bc := range []struct {
		name string
		dev  tun.Device
	}{
		{"raw", src},
		{"filter-empty", newCutoffTUN(src)},
		{"filter-3-addrs", func() tun.Device {
			ct := newCutoffTUN(src)
			ct.replace([]netip.Addr{cut6.Addr(), cut4.Addr(), netip.MustParseAddr("fd5e:1e0b:77aa::7")}, netip.Addr{})
			return ct
		}()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bufs, sizes := readBufs(perBatch)
			for _, buf := range bufs {
				copy(buf[16:], pkt)
			}
			for b.Loop() {
				if n, _ := bc.dev.Read(bufs, sizes, 16); n != perBatch {
					b.Fatal(n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perBatch), "ns/packet")
		})
	}
}

// staticTUN "reads" n packets of size bytes already in the buffers.
type staticTUN struct {
	tun.Device
	n, size int
}

func (s *staticTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for i := range s.n {
		sizes[i] = s.size
	}
	return s.n, nil
}
