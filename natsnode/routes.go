package natsnode

import (
	"net/netip"
	"net/url"
	"slices"
)

// Member is one mesh member as the route set sees it.
type Member struct {
	ServerName string
	Addr       netip.Addr // overlay address
	RoutePort  int
	// LeafPort is the member's leaf-node listener; a leaf server connects
	// to the members SetMembers hands it there.
	LeafPort int
}

func (m Member) addrPort() netip.AddrPort {
	return netip.AddrPortFrom(m.Addr.Unmap(), uint16(m.RoutePort))
}

// routeURLs is THE canonical route set: one explicit route per distinct
// member address (self included: implicit routes are retried only once,
// and nats-server sizes a new JetStream meta group from the number of
// configured routes), sorted, carrying the route secret as user info.
// Reload compares its output, so it must stay deterministic.
func routeURLs(members []Member, secret string) []*url.URL {
	aps := distinctAddrs(members)
	out := make([]*url.URL, 0, len(aps))
	for _, ap := range aps {
		u := &url.URL{Scheme: "nats-route", Host: ap.String()}
		if secret != "" {
			u.User = url.UserPassword(RouteUser, secret)
		}
		out = append(out, u)
	}
	return out
}

// distinctAddrs returns the valid member route addresses, deduplicated and
// sorted.
func distinctAddrs(members []Member) []netip.AddrPort {
	aps := make([]netip.AddrPort, 0, len(members))
	for _, m := range members {
		if !m.Addr.IsValid() || m.RoutePort <= 0 || m.RoutePort > 65535 {
			continue
		}
		aps = append(aps, m.addrPort())
	}
	slices.SortFunc(aps, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return slices.Compact(aps)
}

func urlStrings(us []*url.URL) []string {
	s := make([]string, len(us))
	for i, u := range us {
		s[i] = u.String()
	}
	return s
}

// appliedURLs is what apply compares with the running configuration: the
// route set and then the leaf remote (one of them is empty: a server is
// core or leaf).
func appliedURLs(routes, leaves []*url.URL) []string {
	return append(urlStrings(routes), urlStrings(leaves)...)
}
