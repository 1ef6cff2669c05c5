package wg

import (
	"errors"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tcpConn is one local TCP connection: this end and the remote one.
type tcpConn struct {
	local, remote netip.AddrPort
}

// Linux TCP states (include/net/tcp_states.h) whose socket is a full
// connection that answers a SYN with a challenge ACK. SYN_SENT is left to
// its own retransmission (the filter refuses it then); TIME_WAIT could take
// a SYN as a new connection; LISTEN and SYN_RECV have no connection yet.
var probeStates = map[uint8]bool{
	1:  true, // ESTABLISHED
	4:  true, // FIN_WAIT1
	5:  true, // FIN_WAIT2
	8:  true, // CLOSE_WAIT
	9:  true, // LAST_ACK
	11: true, // CLOSING
}

// connsTo lists the local TCP connections, in this process's network
// namespace, whose remote address is in addrs. It dumps the socket table
// with sock_diag (what ss uses), so it runs only when the cut-off set
// grows, never per packet.
func connsTo(addrs []netip.Addr) ([]tcpConn, error) {
	want := make(map[netip.Addr]bool, len(addrs))
	has4 := false
	for _, a := range addrs {
		want[a] = true
		has4 = has4 || a.Is4()
	}
	var out []tcpConn
	var errs []error
	// IPv6 always: a dual-stack socket talks to an IPv4 peer through an
	// IPv4-mapped address and is listed there.
	for _, fam := range []struct {
		on     bool
		family uint8
	}{{true, unix.AF_INET6}, {has4, unix.AF_INET}} {
		if !fam.on {
			continue
		}
		socks, err := netlink.SocketDiagTCP(fam.family)
		// An interrupted dump is still worth its sockets; the next
		// change of the set or the socket's own traffic covers the rest.
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			errs = append(errs, err)
			continue
		}
		for _, s := range socks {
			if !probeStates[s.State] {
				continue
			}
			remote, ok1 := netip.AddrFromSlice(s.ID.Destination)
			local, ok2 := netip.AddrFromSlice(s.ID.Source)
			if !ok1 || !ok2 || !want[remote.Unmap()] {
				continue
			}
			out = append(out, tcpConn{
				local:  netip.AddrPortFrom(local.Unmap(), s.ID.SourcePort),
				remote: netip.AddrPortFrom(remote.Unmap(), s.ID.DestinationPort),
			})
		}
	}
	return out, errors.Join(errs...)
}
