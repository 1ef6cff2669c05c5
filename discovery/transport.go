package discovery

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// TransportFactory makes the transport one member's gossip runs over,
// bound to bind (its gossip address and port): the narrow seam between
// discovery and the network, like wireguard-go's conn.Bind. Production
// leaves Config.Transport nil and gets NetTransport (UDP and TCP on the
// overlay address); simulations pass an in-memory network's factory.
//
// Whatever the factory returns, discovery wraps it in its address filter
// (filterTransport), so a revoked member's gossip is dropped on every
// transport. The returned transport's packets and streams must carry the
// sender's gossip address as *net.UDPAddr / *net.TCPAddr (From,
// RemoteAddr): the filter and admission read the sender from them.
type TransportFactory func(bind netip.AddrPort, logger *log.Logger) (memberlist.NodeAwareTransport, error)

// NetTransport is the default TransportFactory: memberlist's UDP/TCP
// transport on bind, with dials bound to the gossip address (so that the
// receiving side sees the sender's real address even on loopback) and
// ended at Shutdown.
func NetTransport(bind netip.AddrPort, logger *log.Logger) (memberlist.NodeAwareTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{bind.Addr().String()},
		BindPort:  int(bind.Port()),
		Logger:    logger,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &boundNetTransport{NetTransport: nt, local: bind.Addr(), dials: ctx, cancelDial: cancel}, nil
}

// newTransport makes this member's transport (Config.Transport, default
// NetTransport) and puts the address filter over it.
func (d *Discovery) newTransport(logger *log.Logger) (*filterTransport, error) {
	factory := d.cfg.Transport
	if factory == nil {
		factory = NetTransport
	}
	bind := netip.AddrPortFrom(d.cfg.BindAddr, uint16(d.cfg.Port))
	inner, err := factory(bind, logger)
	if err != nil {
		return nil, fmt.Errorf("discovery: gossip on %s: %w", bind, err)
	}
	return newFilterTransport(inner, d.isBlocked), nil
}

// boundNetTransport is memberlist's NetTransport with dials bound to the
// gossip address.
type boundNetTransport struct {
	*memberlist.NetTransport
	local netip.Addr
	// dials ends pending dials at Shutdown, so that a join towards a dead
	// member does not hold up a node's shutdown for a whole TCP timeout.
	dials      context.Context
	cancelDial context.CancelFunc
}

var _ memberlist.NodeAwareTransport = (*boundNetTransport)(nil)

func (t *boundNetTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *boundNetTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: t.local.AsSlice()}}
	return d.DialContext(t.dials, "tcp", a.Addr)
}

func (t *boundNetTransport) Shutdown() error {
	t.cancelDial()
	return t.NetTransport.Shutdown()
}

// filterTransport is an address filter over any transport: nothing is
// sent to, dialled at or accepted from a blocked address (a revoked
// member, or one side of a partition in tests).
type filterTransport struct {
	inner   memberlist.NodeAwareTransport
	blocked func(netip.Addr) bool

	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*filterTransport)(nil)

func newFilterTransport(inner memberlist.NodeAwareTransport, blocked func(netip.Addr) bool) *filterTransport {
	t := &filterTransport{
		inner:   inner,
		blocked: blocked,
		packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn),
		done:    make(chan struct{}),
	}
	t.wg.Add(2)
	go t.forwardPackets()
	go t.forwardStreams()
	return t
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func hostOf(hostport string) netip.Addr {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (t *filterTransport) forwardPackets() {
	defer t.wg.Done()
	in := t.inner.PacketCh()
	for {
		select {
		case p := <-in:
			if t.blocked(addrOf(p.From)) {
				continue
			}
			select {
			case t.packets <- p:
			case <-t.done:
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *filterTransport) forwardStreams() {
	defer t.wg.Done()
	in := t.inner.StreamCh()
	for {
		select {
		case c := <-in:
			if t.blocked(addrOf(c.RemoteAddr())) {
				c.Close()
				continue
			}
			select {
			case t.streams <- c:
			case <-t.done:
				c.Close()
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *filterTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *filterTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *filterTransport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *filterTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *filterTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.blocked(hostOf(a.Addr)) {
		return time.Now(), nil // dropped, as a lossy network would
	}
	return t.inner.WriteToAddress(b, a)
}

var errBlocked = errors.New("address is blocked")

func (t *filterTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *filterTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.blocked(hostOf(a.Addr)) {
		return nil, fmt.Errorf("dial %s: %w", a.Addr, errBlocked)
	}
	return t.inner.DialAddressTimeout(a, timeout)
}

func (t *filterTransport) Shutdown() error {
	err := t.inner.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}
