package wg

import (
	"errors"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// A hub carries its phones' traffic: a packet a phone sends to another
// member arrives decrypted from the phone's peer and, to reach that member,
// must go out encrypted to the member's peer, and the reverse. Left to the
// kernel this is IPv6 forwarding, which Linux only has as a global switch
// (net.ipv6.conf.all.forwarding, which also turns off router advertisement
// acceptance on every interface unless accept_ra=2): a hub would work or
// not depending on the box's sysctls. So the hub forwards in userspace
// instead. The forwarder sits between wireguard-go and the TUN: on the
// write path (wireguard-go → kernel) it takes out every packet to or from
// one of this hub's phones whose destination is another overlay address,
// and hands it straight back to wireguard-go's read path (kernel →
// wireguard-go), as if the kernel had routed it back into the interface.
// wireguard-go then encrypts it to the peer whose AllowedIPs hold the
// destination. The kernel never sees forwarded packets, and the hub's own
// traffic with its phones (NATS on the hub's address) goes to the kernel
// as before.
//
// Waking the read path: wireguard-go's one TUN reader is usually blocked in
// the kernel TUN's read. The kernel TUN's file is non-blocking and in Go's
// poller, so an injected packet wakes it with a read deadline in the past;
// the forwarder turns the deadline error into a reread that returns the
// injected packets. No goroutine or copy is added to the kernel path. A
// TUN without such a file (the in-memory TUN of the tests) is read by a
// pump goroutine instead.

// maxInjected bounds the packets waiting for wireguard-go's read path;
// beyond it forwarded packets are dropped, like a router's full queue.
const maxInjected = 1024

// forwardSet is what the forwarder decides by; immutable once stored.
type forwardSet struct {
	self   netip.Addr
	prefix netip.Prefix
	phones map[netip.Addr]struct{}
	all    bool // a hub's relay: every overlay address (relay.go)
}

func (s *forwardSet) forward(pkt []byte) bool {
	if len(pkt) < ipv6HeaderLen || pkt[0]>>4 != 6 {
		return false
	}
	src := netip.AddrFrom16([16]byte(pkt[8:24]))
	dst := netip.AddrFrom16([16]byte(pkt[24:40]))
	if dst == s.self || !s.prefix.Contains(dst) || dst.IsMulticast() {
		return false
	}
	_, fromPhone := s.phones[src]
	_, toPhone := s.phones[dst]
	return fromPhone || toPhone || s.relayed(dst)
}

// forwardTUN is the tun.Device wireguard-go reads and writes.
type forwardTUN struct {
	tun.Device

	set atomic.Pointer[forwardSet] // nil: forward nothing (one load per batch)

	// file is the kernel TUN's pollable file (deadline wake-ups); nil
	// selects the pump.
	file    *os.File
	reading atomic.Bool // the reader is in (or about to enter) the inner Read
	inj     chan []byte // injected packets, each a pooled buffer slice
	pool    sync.Pool

	pumpOnce sync.Once
	pumpErr  chan error // pump mode: the inner Read's final error

	forwarded atomic.Uint64
	dropped   atomic.Uint64 // queue full or hop limit exhausted
}

func newForwardTUN(inner tun.Device, file *os.File) *forwardTUN {
	return &forwardTUN{
		Device:  inner,
		file:    file,
		inj:     make(chan []byte, maxInjected),
		pumpErr: make(chan error, 1),
		pool:    sync.Pool{New: func() any { b := make([]byte, device.MaxMessageSize); return &b }},
	}
}

// Write passes wireguard-go's decrypted packets to the kernel, except
// those to forward.
func (t *forwardTUN) Write(bufs [][]byte, offset int) (int, error) {
	set := t.set.Load()
	if set == nil {
		return t.Device.Write(bufs, offset)
	}
	var kept [][]byte
	for i, b := range bufs {
		if !set.forward(b[offset:]) {
			if kept != nil {
				kept = append(kept, b)
			}
			continue
		}
		if kept == nil {
			// First packet to forward in this batch: from here on the
			// kernel gets a copy of the slice without them.
			kept = append(make([][]byte, 0, len(bufs)), bufs[:i]...)
		}
		t.inject(b[offset:])
	}
	if kept == nil {
		return t.Device.Write(bufs, offset)
	}
	if len(kept) > 0 {
		if _, err := t.Device.Write(kept, offset); err != nil {
			return 0, err
		}
	}
	return len(bufs), nil
}

// inject queues a copy of pkt for wireguard-go's read path, with its hop
// limit decremented as a router would (two hubs that disagree about a
// phone cannot bounce a packet forever).
func (t *forwardTUN) inject(pkt []byte) {
	if pkt[7] <= 1 {
		t.dropped.Add(1)
		return
	}
	bp := t.pool.Get().(*[]byte)
	b := (*bp)[:copy(*bp, pkt)]
	b[7]--
	select {
	case t.inj <- b:
		t.forwarded.Add(1)
	default:
		t.pool.Put(bp)
		t.dropped.Add(1)
		return
	}
	// Ordered after the send: either the reader's drain (which follows its
	// reading.Store(true)) sees the packet, or this sees reading set.
	if t.file != nil && t.reading.Load() {
		t.file.SetReadDeadline(time.Unix(1, 0))
	}
}

// drain moves queued packets into bufs without blocking.
func (t *forwardTUN) drain(bufs [][]byte, sizes []int, offset int) int {
	n := 0
	for n < len(bufs) {
		select {
		case b := <-t.inj:
			sizes[n] = copy(bufs[n][offset:], b)
			t.release(b)
			n++
		default:
			return n
		}
	}
	return n
}

func (t *forwardTUN) release(b []byte) {
	b = b[:cap(b)]
	t.pool.Put(&b)
}

// Read returns injected packets first, then what the kernel has.
func (t *forwardTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.file == nil {
		return t.pumpRead(bufs, sizes, offset)
	}
	for {
		t.reading.Store(true)
		if n := t.drain(bufs, sizes, offset); n > 0 {
			t.reading.Store(false)
			return n, nil
		}
		n, err := t.Device.Read(bufs, sizes, offset)
		t.reading.Store(false)
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			// Our wake-up, not a failure: wireguard-go closes the device
			// on any read error it is handed.
			t.file.SetReadDeadline(time.Time{})
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// pumpRead serves a TUN that cannot be woken: a goroutine reads it into
// pooled buffers and queues the packets with the injected ones.
func (t *forwardTUN) pumpRead(bufs [][]byte, sizes []int, offset int) (int, error) {
	t.pumpOnce.Do(func() { go t.pump(len(bufs), offset) })
	select {
	case b := <-t.inj:
		sizes[0] = copy(bufs[0][offset:], b)
		t.release(b)
		return 1 + t.drain(bufs[1:], sizes[1:], offset), nil
	case err := <-t.pumpErr:
		t.pumpErr <- err // every later Read fails the same way
		return 0, err
	}
}

func (t *forwardTUN) pump(batch, offset int) {
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, device.MaxMessageSize)
	}
	sizes := make([]int, batch)
	for {
		n, err := t.Device.Read(bufs, sizes, offset)
		for i := range n {
			bp := t.pool.Get().(*[]byte)
			t.inj <- (*bp)[:copy(*bp, bufs[i][offset:offset+sizes[i]])] // kernel packets wait, never drop
		}
		if err != nil {
			t.pumpErr <- err
			return
		}
	}
}

// ForwardStats says what the hub's userspace forwarding does.
type ForwardStats struct {
	// Phones is how many phone addresses are forwarded for.
	Phones int
	// Mode is "wake" (the kernel TUN's reader is woken for forwarded
	// packets: no cost to other traffic) or "pump" (a TUN that cannot
	// be woken is read by a goroutine).
	Mode      string
	Forwarded uint64
	Dropped   uint64
}

// SetForward makes the device forward, in userspace, packets to and from
// the given phone addresses (this hub's phones) to other addresses in the
// mesh prefix; nil or empty stops forwarding. The phones must be WireGuard
// peers with their /128 as AllowedIPs, and the other members' peers hold
// their own addresses, so wireguard-go picks the right peer for each
// forwarded packet. Packets to the device's own address are never
// forwarded. Cost with no phones: one atomic load per batch written.
func (d *Device) SetForward(phones []netip.Addr) {
	d.fwdMu.Lock()
	defer d.fwdMu.Unlock()
	d.phones = append([]netip.Addr(nil), phones...)
	d.storeForward()
}

// storeForward installs the forward set for d.phones and d.relayAll;
// d.fwdMu is held.
func (d *Device) storeForward() {
	if len(d.phones) == 0 && !d.relayAll {
		d.fwd.set.Store(nil)
		return
	}
	s := &forwardSet{self: d.addr, prefix: d.prefix, phones: make(map[netip.Addr]struct{}, len(d.phones)), all: d.relayAll}
	for _, a := range d.phones {
		s.phones[a.Unmap()] = struct{}{}
	}
	d.fwd.set.Store(s)
}

// ForwardStats returns the forwarder's state and counters.
func (d *Device) ForwardStats() ForwardStats {
	s := ForwardStats{Mode: "wake", Forwarded: d.fwd.forwarded.Load(), Dropped: d.fwd.dropped.Load()}
	if d.fwd.file == nil {
		s.Mode = "pump"
	}
	if p := d.fwd.set.Load(); p != nil {
		s.Phones = len(p.phones)
	}
	return s
}
