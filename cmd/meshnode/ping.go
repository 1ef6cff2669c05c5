package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
)

// runPing sends ICMPv6 echo requests to a member's overlay address and
// prints, for each reply, the path it took (as the daemon's path machine
// sees it at that moment) and the round trip, like `tailscale ping`:
//
//	pong from edge3 via relay hub1 in 3.1 ms
func runPing(ctx context.Context, args []string) error {
	fs := newFlagSet("ping", "[--count N] [--interval D] NAME")
	state := stateFlag(fs)
	count := fs.Int("count", 5, "echo requests to send")
	interval := fs.Duration("interval", time.Second, "time between requests")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for each reply")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("ping: want one member name")
	}
	name := fs.Arg(0)
	client := api.NewClient(identity.StateDir(*state))
	st, err := client.Status(ctx)
	if err != nil {
		return err
	}
	m, ok := findMember(st, name)
	if !ok {
		return fmt.Errorf("ping: no member %q in this node's mesh", name)
	}
	conn, err := listenICMPv6()
	if err != nil {
		return err
	}
	defer conn.Close()
	id := os.Getpid() & 0xffff
	got := 0
	for seq := 1; seq <= *count; seq++ {
		if seq > 1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(*interval):
			}
		}
		rtt, err := echo(conn, m.Addr, id, seq, *timeout)
		if err != nil {
			fmt.Printf("no pong from %s (%s): %v\n", name, m.Addr, err)
			continue
		}
		got++
		path := "?"
		if st, err := client.Status(ctx); err == nil {
			if m, ok := findMember(st, name); ok {
				path = pathVia(m.Path)
			}
		}
		fmt.Printf("pong from %s via %s in %.1f ms\n", name, path, float64(rtt.Microseconds())/1000)
	}
	if got == 0 {
		return &exitError{code: 1, err: fmt.Errorf("ping: no pong from %s", name)}
	}
	return nil
}

func findMember(st *api.Status, name string) (api.MemberStatus, bool) {
	for _, m := range st.Members {
		if m.Name == name {
			return m, true
		}
	}
	return api.MemberStatus{}, false
}

// pathVia is the path column without its reason: "relay hub1",
// "direct 203.0.113.7:41641".
func pathVia(path string) string {
	if i := strings.Index(path, " ("); i >= 0 {
		return path[:i]
	}
	return path
}

// listenICMPv6 opens an unprivileged ping socket where the kernel allows
// it (net.ipv4.ping_group_range also governs ICMPv6), a raw one otherwise.
func listenICMPv6() (*icmp.PacketConn, error) {
	c, err := icmp.ListenPacket("udp6", "::")
	if err == nil {
		return c, nil
	}
	c, err2 := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err2 != nil {
		return nil, fmt.Errorf("ping: open an ICMPv6 socket: %v; raw: %w", err, err2)
	}
	return c, nil
}

func echo(c *icmp.PacketConn, dst netip.Addr, id, seq int, timeout time.Duration) (time.Duration, error) {
	msg := icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("meshnode ping")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return 0, err
	}
	var to net.Addr = &net.IPAddr{IP: dst.AsSlice()}
	if c.LocalAddr().Network() == "udp" || strings.HasPrefix(c.LocalAddr().Network(), "udp") {
		to = &net.UDPAddr{IP: dst.AsSlice()}
	}
	start := time.Now()
	if _, err := c.WriteTo(b, to); err != nil {
		return 0, err
	}
	deadline := start.Add(timeout)
	buf := make([]byte, 1500)
	for {
		c.SetReadDeadline(deadline)
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return 0, errors.New("timeout")
		}
		rm, err := icmp.ParseMessage(58, buf[:n])
		if err != nil || rm.Type != ipv6.ICMPTypeEchoReply {
			continue
		}
		e, ok := rm.Body.(*icmp.Echo)
		// An unprivileged socket rewrites the ID; match the sequence and
		// the sender.
		if !ok || e.Seq != seq || !sameAddr(from, dst) {
			continue
		}
		return time.Since(start), nil
	}
}

func sameAddr(a net.Addr, want netip.Addr) bool {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	}
	got, ok := netip.AddrFromSlice(ip)
	return ok && got.Unmap() == want
}
