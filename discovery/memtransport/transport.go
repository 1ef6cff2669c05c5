package memtransport

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Counters are one member's traffic: what its memberlist handed the
// network and what the network handed it. Bytes are memberlist's own
// (sealed, labelled) payload; no IP, UDP or TCP headers are added.
type Counters struct {
	PacketsSent, PacketsReceived uint64
	BytesSent, BytesReceived     uint64 // packet payloads
	// PacketsLost were lost to the loss rate; PacketsDropped found no
	// one to take them (unreachable, killed, unbound) or a full inbox at
	// the receiver (counted at the receiver as InboxOverflows).
	PacketsLost, PacketsDropped uint64
	InboxOverflows              uint64
	StreamsDialled              uint64
	StreamBytesSent             uint64
	StreamBytesReceived         uint64
}

// Sent is every byte sent, packets and streams.
func (c Counters) Sent() uint64 { return c.BytesSent + c.StreamBytesSent }

// Received is every byte received, packets and streams.
func (c Counters) Received() uint64 { return c.BytesReceived + c.StreamBytesReceived }

// Sub is c minus an earlier snapshot o.
func (c Counters) Sub(o Counters) Counters {
	return Counters{
		PacketsSent: c.PacketsSent - o.PacketsSent, PacketsReceived: c.PacketsReceived - o.PacketsReceived,
		BytesSent: c.BytesSent - o.BytesSent, BytesReceived: c.BytesReceived - o.BytesReceived,
		PacketsLost: c.PacketsLost - o.PacketsLost, PacketsDropped: c.PacketsDropped - o.PacketsDropped,
		InboxOverflows: c.InboxOverflows - o.InboxOverflows, StreamsDialled: c.StreamsDialled - o.StreamsDialled,
		StreamBytesSent: c.StreamBytesSent - o.StreamBytesSent, StreamBytesReceived: c.StreamBytesReceived - o.StreamBytesReceived,
	}
}

// counters are Counters as atomics: bumped by senders, receivers and
// timers at once.
type counters struct {
	packetsSent, packetsReceived atomic.Uint64
	bytesSent, bytesReceived     atomic.Uint64
	packetsLost, packetsDropped  atomic.Uint64
	inboxOverflows               atomic.Uint64
	streamsDialled               atomic.Uint64
	streamBytesSent              atomic.Uint64
	streamBytesReceived          atomic.Uint64
}

// Transport is one member's memberlist.NodeAwareTransport on a Network.
type Transport struct {
	net  *Network
	addr netip.AddrPort
	udp  *net.UDPAddr // From of the packets it sends
	tcp  *net.TCPAddr // RemoteAddr of the streams it dials

	inbox   chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
	stats   counters
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

func newTransport(n *Network, addr netip.AddrPort) *Transport {
	ip := addr.Addr().AsSlice()
	return &Transport{
		net:     n,
		addr:    addr,
		udp:     &net.UDPAddr{IP: ip, Port: int(addr.Port())},
		tcp:     &net.TCPAddr{IP: ip, Port: int(addr.Port())},
		inbox:   make(chan *memberlist.Packet, n.inboxDepth),
		streams: make(chan net.Conn),
		done:    make(chan struct{}),
	}
}

// Addr is where the transport is bound.
func (t *Transport) Addr() netip.AddrPort { return t.addr }

// Counters snapshots the transport's counters.
func (t *Transport) Counters() Counters {
	s := &t.stats
	return Counters{
		PacketsSent: s.packetsSent.Load(), PacketsReceived: s.packetsReceived.Load(),
		BytesSent: s.bytesSent.Load(), BytesReceived: s.bytesReceived.Load(),
		PacketsLost: s.packetsLost.Load(), PacketsDropped: s.packetsDropped.Load(),
		InboxOverflows: s.inboxOverflows.Load(), StreamsDialled: s.streamsDialled.Load(),
		StreamBytesSent: s.streamBytesSent.Load(), StreamBytesReceived: s.streamBytesReceived.Load(),
	}
}

func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.addr.Addr().AsSlice(), int(t.addr.Port()), nil
}

func parseAddr(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("memtransport: address %q: %w", s, err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends one datagram. Like UDP it reports no failure to
// deliver, only a malformed address.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	dst, err := parseAddr(a.Addr)
	if err != nil {
		return now, err
	}
	r := t.net.route(t.addr, dst, true)
	if r.silent {
		return now, nil
	}
	t.stats.packetsSent.Add(1)
	t.stats.bytesSent.Add(uint64(len(b)))
	switch {
	case r.dst == nil || !r.reachable:
		t.stats.packetsDropped.Add(1)
		return now, nil
	case r.lost:
		t.stats.packetsLost.Add(1)
		return now, nil
	}
	p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: t.udp}
	if r.delay == 0 {
		r.dst.deliver(p)
	} else {
		time.AfterFunc(r.delay, func() { r.dst.deliver(p) })
	}
	return now, nil
}

// deliver queues a packet that arrived, unless the transport is gone,
// killed meanwhile or its inbox is full.
func (t *Transport) deliver(p *memberlist.Packet) {
	select {
	case <-t.done:
		return
	default:
	}
	t.net.mu.RLock()
	killed := t.net.killed[t.addr.Addr()]
	t.net.mu.RUnlock()
	if killed {
		return
	}
	p.Timestamp = time.Now()
	select {
	case t.inbox <- p:
		t.stats.packetsReceived.Add(1)
		t.stats.bytesReceived.Add(uint64(len(p.Buf)))
	default:
		t.stats.inboxOverflows.Add(1)
	}
}

func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.inbox }
func (t *Transport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// dialError is a failed dial, a net.Error so that callers can tell a
// timeout.
type dialError struct {
	addr    string
	timeout bool
	msg     string
}

func (e *dialError) Error() string   { return "memtransport: dial " + e.addr + ": " + e.msg }
func (e *dialError) Timeout() bool   { return e.timeout }
func (e *dialError) Temporary() bool { return e.timeout }
func (e *dialError) Unwrap() error {
	if e.timeout {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// DialAddressTimeout opens a stream. Nobody bound there (or shut down):
// refused at once, as a closed port answers with a reset. Unreachable
// (partition, killed): the dial hangs until timeout, as into a black
// hole. Otherwise it takes one round trip (the handshake), and the other
// side's memberlist sees the stream half-way through.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dst, err := parseAddr(a.Addr)
	if err != nil {
		return nil, err
	}
	var expire <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expire = timer.C
	}
	timedOut := &dialError{addr: a.Addr, timeout: true, msg: "i/o timeout"}
	r := t.net.route(t.addr, dst, false)
	if !r.silent {
		t.stats.streamsDialled.Add(1)
	}
	if r.silent || (r.dst != nil && !r.reachable) {
		select {
		case <-expire:
			return nil, timedOut
		case <-t.done:
			return nil, &dialError{addr: a.Addr, msg: "transport shut down"}
		}
	}
	if r.dst == nil {
		return nil, &dialError{addr: a.Addr, msg: "connection refused"}
	}
	oneWay := t.net.oneWay()
	wait := func(d time.Duration) error {
		if d <= 0 {
			return nil
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
			return nil
		case <-expire:
			return timedOut
		case <-t.done:
			return &dialError{addr: a.Addr, msg: "transport shut down"}
		}
	}
	if err := wait(oneWay); err != nil {
		return nil, err
	}
	client, server := newConnPair(t, r.dst)
	select {
	case r.dst.streams <- server:
	case <-r.dst.done:
		return nil, &dialError{addr: a.Addr, msg: "connection refused"}
	case <-expire:
		return nil, timedOut
	case <-t.done:
		return nil, &dialError{addr: a.Addr, msg: "transport shut down"}
	}
	if err := wait(oneWay); err != nil {
		client.Close()
		return nil, err
	}
	return client, nil
}

// Shutdown unbinds the transport: packets to it are dropped and dials to
// it refused from now on.
func (t *Transport) Shutdown() error {
	t.once.Do(func() {
		close(t.done)
		t.net.unbind(t)
	})
	return nil
}
