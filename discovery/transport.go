package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// filterTransport is memberlist's UDP/TCP transport with an address filter:
// nothing is sent to, dialled at or accepted from a blocked address (a
// revoked member, or one side of a partition in tests). Dials are bound to
// the gossip address so that the receiving side sees the sender's real
// address even on loopback.
type filterTransport struct {
	*memberlist.NetTransport
	local   netip.Addr
	blocked func(netip.Addr) bool

	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	// dials ends pending dials at Shutdown, so that a join towards a dead
	// member does not hold up a node's shutdown for a whole TCP timeout.
	dials      context.Context
	cancelDial context.CancelFunc
}

var _ memberlist.NodeAwareTransport = (*filterTransport)(nil)

func newFilterTransport(nt *memberlist.NetTransport, local netip.Addr, blocked func(netip.Addr) bool) *filterTransport {
	ctx, cancel := context.WithCancel(context.Background())
	t := &filterTransport{
		dials:        ctx,
		cancelDial:   cancel,
		NetTransport: nt,
		local:        local,
		blocked:      blocked,
		packets:      make(chan *memberlist.Packet),
		streams:      make(chan net.Conn),
		done:         make(chan struct{}),
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
	in := t.NetTransport.PacketCh()
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
	in := t.NetTransport.StreamCh()
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

func (t *filterTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *filterTransport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *filterTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *filterTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.blocked(hostOf(a.Addr)) {
		return time.Now(), nil // dropped, as a lossy network would
	}
	return t.NetTransport.WriteToAddress(b, a)
}

var errBlocked = errors.New("address is blocked")

func (t *filterTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *filterTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.blocked(hostOf(a.Addr)) {
		return nil, fmt.Errorf("dial %s: %w", a.Addr, errBlocked)
	}
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: t.local.AsSlice()}}
	return d.DialContext(t.dials, "tcp", a.Addr)
}

func (t *filterTransport) Shutdown() error {
	t.cancelDial()
	err := t.NetTransport.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}
