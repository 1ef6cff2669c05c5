package enroll

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/netutil"

	"github.com/meshnode/meshnode/mesh/defaults"
)

// limitConns caps the endpoint's open connections: at most
// defaults.EnrollMaxConns in all (further connections wait in the kernel's
// accept queue: netutil.LimitListener) and defaults.EnrollMaxConnsPerAddr
// from one address (further ones are closed at once), so that idle TLS
// connections from one source cannot take the endpoint's memory or every
// slot.
func limitConns(ln net.Listener) net.Listener {
	return &perAddrListener{Listener: netutil.LimitListener(ln, defaults.EnrollMaxConns), max: defaults.EnrollMaxConnsPerAddr, open: map[netip.Addr]int{}}
}

type perAddrListener struct {
	net.Listener
	max int

	mu   sync.Mutex
	open map[netip.Addr]int // open connections per source address
}

func (l *perAddrListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a := addrOf(c.RemoteAddr())
		l.mu.Lock()
		over := l.open[a] >= l.max
		if !over {
			l.open[a]++
		}
		l.mu.Unlock()
		if over {
			c.Close()
			continue
		}
		return &countedConn{Conn: c, release: func() { l.release(a) }}, nil
	}
}

func (l *perAddrListener) release(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[a]--; l.open[a] <= 0 {
		delete(l.open, a)
	}
}

// countedConn gives its slot back once, however often it is closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
