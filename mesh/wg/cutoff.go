package wg

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// A peer that is killed or revoked sends no TCP reset: packets to its
// overlay address vanish in the tunnel, and every local connection to it
// hangs until the application's own keepalive gives up (minutes, for NATS).
// The cut-off filter answers for it. It sits between the kernel TUN and
// wireguard-go, sees every packet the kernel routes into the overlay, and
// for one addressed to a cut-off address writes back into the kernel the
// TCP reset the peer would have sent, so the local socket fails at once
// (ECONNRESET, or ECONNREFUSED for a connect) and the application
// reconnects to a live member. Packets that are not TCP are dropped: the
// peer could not receive them anyway, and an ICMPv6 error would change
// nothing for the one UDP user of the overlay (memberlist ignores them).
//
// A socket that sends nothing (blocked in read) would never be answered,
// so SetCutOff also pokes every local TCP connection to a newly cut-off
// address with a SYN "from" that address (appendProbeSYN): the kernel
// replies with a challenge ACK, which the filter answers with the reset.

// cutSet is an immutable set of cut-off addresses; IPv4-mapped IPv6
// addresses are stored unmapped, as packets carry them.
type cutSet map[netip.Addr]struct{}

func (s cutSet) has(a netip.Addr) bool {
	_, ok := s[a]
	return ok
}

// resetHeadroom is the space left in front of every packet the filter
// writes: wireguard-go writes with this offset, and the Linux TUN with
// offloads puts its virtio header there (it needs at least 10 bytes).
const resetHeadroom = device.MessageTransportOffsetContent

// cutoffTUN is the tun.Device handed to wireguard-go. Everything but Read
// is the kernel TUN's own.
type cutoffTUN struct {
	tun.Device

	// set is read once per Read batch without a lock; nil (never an empty
	// map) means nothing is cut off, so the common case costs one atomic
	// load per batch and no per-packet work.
	set atomic.Pointer[cutSet]

	mu sync.Mutex // serialises replacing set, so each change is diffed against the one before

	resets  atomic.Uint64 // resets written back to the kernel
	probes  atomic.Uint64 // probe SYNs written back to the kernel
	dropped atomic.Uint64 // packets to a cut-off address not answered (not TCP, a reset, malformed, write failed)
}

func newCutoffTUN(inner tun.Device) *cutoffTUN { return &cutoffTUN{Device: inner} }

// Read reads from the kernel TUN and takes out of the batch every packet
// to a cut-off address, answering those that are TCP. The packets passed on
// keep their order and are moved down so the batch has no holes. A batch
// that was all cut off is not returned as (0, nil): Read reads again.
func (t *cutoffTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		n, err := t.Device.Read(bufs, sizes, offset)
		// Loaded after the read returns, so a set installed while the
		// read was blocked already applies to what it returns.
		set := t.set.Load()
		if set == nil || n <= 0 {
			return n, err
		}
		if kept := t.filter(*set, bufs[:n], sizes, offset); kept > 0 || err != nil {
			return kept, err
		}
	}
}

// filter compacts bufs to the packets not addressed to set, answers the
// others, and returns how many it kept.
func (t *cutoffTUN) filter(set cutSet, bufs [][]byte, sizes []int, offset int) int {
	var replies [][]byte
	kept := 0
	for i := range bufs {
		pkt := bufs[i][offset : offset+sizes[i]]
		if dst, ok := destination(pkt); !ok || !set.has(dst) {
			// Not ours to judge (wireguard-go drops what it cannot parse).
			if kept != i {
				// wireguard-go's buffers are all the same size, so this
				// copy always fits; it happens only in a batch that had
				// a cut-off packet before this one.
				copy(bufs[kept][offset:], pkt)
				sizes[kept] = sizes[i]
			}
			kept++
			continue
		}
		seg, ok := parseTCP(pkt)
		if !ok {
			t.dropped.Add(1)
			continue
		}
		rst, ok := appendReset(make([]byte, resetHeadroom, resetHeadroom+ipv6HeaderLen+tcpHeaderLen), seg)
		if !ok {
			t.dropped.Add(1)
			continue
		}
		replies = append(replies, rst)
	}
	if len(replies) > 0 {
		t.writeBack(replies, &t.resets)
	}
	return kept
}

// writeBack writes packets (each with resetHeadroom bytes in front) into
// the kernel and counts them in ok, or in dropped when the write fails. The
// kernel TUN serialises its writers, so this is safe next to wireguard-go's
// own writes.
func (t *cutoffTUN) writeBack(pkts [][]byte, ok *atomic.Uint64) {
	// The Linux TUN's Write returns bytes, not packets; only the error
	// says whether all of them went in.
	if _, err := t.Device.Write(pkts, resetHeadroom); err != nil {
		t.dropped.Add(uint64(len(pkts)))
		return
	}
	ok.Add(uint64(len(pkts)))
}

// replace installs addrs as the cut-off set and returns what it added and
// removed, each sorted. Invalid, unspecified and multicast addresses, and
// self (the device's own address, which never goes through the TUN
// anyway), are ignored.
func (t *cutoffTUN) replace(addrs []netip.Addr, self netip.Addr) (added, removed []netip.Addr) {
	next := make(cutSet, len(addrs))
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a == self {
			continue
		}
		next[a] = struct{}{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var prev cutSet
	if p := t.set.Load(); p != nil {
		prev = *p
	}
	for a := range next {
		if !prev.has(a) {
			added = append(added, a)
		}
	}
	for a := range prev {
		if !next.has(a) {
			removed = append(removed, a)
		}
	}
	if len(next) == 0 {
		t.set.Store(nil)
	} else {
		t.set.Store(&next)
	}
	slices.SortFunc(added, netip.Addr.Compare)
	slices.SortFunc(removed, netip.Addr.Compare)
	return added, removed
}

// probe writes one probe SYN for each connection (see appendProbeSYN).
func (t *cutoffTUN) probe(conns []tcpConn) {
	if len(conns) == 0 {
		return
	}
	pkts := make([][]byte, 0, len(conns))
	for _, c := range conns {
		pkts = append(pkts, appendProbeSYN(make([]byte, resetHeadroom, resetHeadroom+ipv6HeaderLen+tcpHeaderLen), c.remote, c.local))
	}
	t.writeBack(pkts, &t.probes)
}

// CutOffStats counts what the cut-off filter did since the device opened.
type CutOffStats struct {
	Addrs   int    // addresses cut off now
	Resets  uint64 // TCP resets written back to the kernel
	Probes  uint64 // probe SYNs written to make idle local connections answer
	Dropped uint64 // packets to a cut-off address not answered: not TCP, a reset, malformed, or the write failed
}

func (t *cutoffTUN) stats() CutOffStats {
	s := CutOffStats{Resets: t.resets.Load(), Probes: t.probes.Load(), Dropped: t.dropped.Load()}
	if p := t.set.Load(); p != nil {
		s.Addrs = len(*p)
	}
	return s
}

// SetCutOff replaces the set of cut-off overlay addresses with addrs (an
// empty or nil slice clears it). From the moment it returns, every TCP
// segment the kernel routes to one of them is answered with a reset from
// that address instead of being handed to WireGuard, and every other packet
// to them is dropped; local connections already open to a newly cut-off
// address are probed so that they fail now rather than on their next send.
// Packets to every other address are untouched. The device's own address
// and invalid or multicast addresses are ignored.
//
// Contract for the caller: a cut-off address loses every connection at
// once, so an address goes in only on positive knowledge that its member
// is gone, never on a suspicion: the member is revoked (a CA-signed
// revocation), or gossip declares it dead and WireGuard confirms, by a
// handshake it was asked for and did not get (see CutOffSet and
// Device.ProbeDead, which implement the recommended rule). The set is
// recomputed and passed again on every reconcile, so a member seen alive
// again (or answering WireGuard) leaves it on the next one; SetCutOff keeps
// no memory of its own beyond the current set.
//
// Cost: with an empty set, one atomic load per batch of packets read from
// the TUN (BenchmarkCutOffRead). With addresses cut off, a map lookup per
// packet, and the set's diff and a socket-table dump here when it grows.
func (d *Device) SetCutOff(addrs []netip.Addr) {
	added, removed := d.cut.replace(addrs, d.addr)
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	d.log.Info("overlay addresses cut off", "added", added, "removed", removed, "now", d.cut.stats().Addrs)
	if len(added) == 0 {
		return
	}
	conns, err := d.connsTo(added)
	if err != nil {
		// The connections found are still probed; the others fail on
		// their next segment.
		d.log.Warn("listing local TCP connections to cut-off addresses", "err", err)
	}
	d.cut.probe(conns)
	if len(conns) > 0 {
		d.log.Info("probed local connections to cut-off addresses", "connections", len(conns))
	}
}

// CutOffStats returns the cut-off filter's counters.
func (d *Device) CutOffStats() CutOffStats { return d.cut.stats() }
