// Package discoverytest runs in-process gossip meshes without root: each
// member gets a loopback address of its own (127.N.x.y) and every member of
// a test binary shares one gossip port, as members of a real mesh do.
// Test-only: no product package imports it.
package discoverytest

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/meshnode/meshnode/identity"
)

// Loopback hands out loopback addresses in 127.Net.0.0/16 per identity
// and finds a gossip port free on the whole range. Each test package uses
// its own Net, so packages testing at once do not collide.
type Loopback struct {
	Net byte

	addrs sync.Map // identity.NodePublic → netip.Addr
	next  atomic.Uint32

	portOnce sync.Once
	port     int
}

// Assign returns node's address, giving it the next free one the first
// time.
func (l *Loopback) Assign(node identity.NodePublic) netip.Addr {
	if a, ok := l.addrs.Load(node); ok {
		return a.(netip.Addr)
	}
	n := l.next.Add(1)
	a := netip.AddrFrom4([4]byte{127, l.Net, byte(1 + n/250), byte(1 + n%250)})
	actual, _ := l.addrs.LoadOrStore(node, a)
	return actual.(netip.Addr)
}

// GossipAddr is discovery.Config.GossipAddr: the address Assign gave the
// ticket's identity, or none.
func (l *Loopback) GossipAddr(t *identity.Ticket) netip.Addr {
	if a, ok := l.addrs.Load(t.Node); ok {
		return a.(netip.Addr)
	}
	return netip.Addr{}
}

// Port is the gossip port of the test binary: free for TCP and UDP on
// 127.Net.0.1 when first asked.
func (l *Loopback) Port(t testing.TB) int {
	l.portOnce.Do(func() {
		for range 20 {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.%d.0.1:0", l.Net))
			if err != nil {
				t.Fatal(err)
			}
			p := ln.Addr().(*net.TCPAddr).Port
			ln.Close()
			pc, err := net.ListenPacket("udp", fmt.Sprintf("127.%d.0.1:%d", l.Net, p))
			if err == nil {
				pc.Close()
				l.port = p
				return
			}
		}
		t.Fatal("no free gossip port")
	})
	return l.port
}

// Logger discards unless the environment variable env is set, then logs
// at debug level to stderr, tagged with the node's name.
func Logger(env, name string) *slog.Logger {
	if os.Getenv(env) == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
}
