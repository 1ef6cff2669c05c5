package discovery

import (
	"fmt"
	"net/netip"
)

// CheckDialable reports an endpoint no member should be told to dial: a
// loopback, link-local, multicast, broadcast or "this network" address,
// or one inside the mesh prefix (WireGuard over its own tunnel). Every
// member sends handshakes to the endpoints a member advertises, so an
// endpoint like 127.0.0.1:22 or 169.254.169.254:80 would make the whole
// mesh send packets to services on their own boxes or their cloud's
// metadata address on behalf of one member. Private addresses (10/8,
// 192.168/16, fc00::/7 outside the mesh) are fine: LAN meshes use them.
// A mesh for a lab on one host (lab_endpoints) skips this check; mesh
// may be the zero prefix when it is not known.
func CheckDialable(eps []netip.AddrPort, mesh netip.Prefix) error {
	for _, ep := range eps {
		if why := undialable(ep.Addr().Unmap(), mesh); why != "" {
			return fmt.Errorf("endpoint %s is %s, which members must not be told to dial", ep, why)
		}
	}
	return nil
}

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	broadcast   = netip.MustParseAddr("255.255.255.255")
)

func undialable(a netip.Addr, mesh netip.Prefix) string {
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsMulticast():
		return "a multicast address"
	case a == broadcast:
		return "the broadcast address"
	case thisNetwork.Contains(a):
		return `in 0.0.0.0/8 ("this network")`
	case mesh.IsValid() && mesh.Contains(a):
		return "inside the mesh prefix " + mesh.String()
	}
	return ""
}
