package wg

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Peer is one desired WireGuard peer.
type Peer struct {
	PublicKey wgtypes.Key
	// Endpoint is where to send the first handshake; the zero value means
	// none known (a peer behind NAT that will call in). See Apply for when
	// it is written to the device.
	Endpoint netip.AddrPort
	// AllowedIPs is the full set routed to this peer; order is irrelevant.
	AllowedIPs []netip.Prefix
	// PersistentKeepalive is whole seconds, 0 = off, at most 65535 s.
	PersistentKeepalive time.Duration
}

// PeerStats is one live peer as the device sees it.
type PeerStats struct {
	PublicKey wgtypes.Key
	// Endpoint is the current one, learned by roaming if the peer moved;
	// zero if the device has none.
	Endpoint            netip.AddrPort
	AllowedIPs          []netip.Prefix
	PersistentKeepalive time.Duration
	LastHandshake       time.Time // zero: never
	RxBytes, TxBytes    int64
}

// Changes counts what one Apply did to the device.
type Changes struct {
	Added, Updated, Removed int
}

// None reports whether nothing was changed.
func (c Changes) None() bool { return c == Changes{} }

func (c Changes) String() string {
	return fmt.Sprintf("added=%d updated=%d removed=%d", c.Added, c.Updated, c.Removed)
}

type opKind int

const (
	opAdd opKind = iota
	opUpdate
	opRemove
)

// peerOp is one peer's change; only the Set* fields (and a valid Endpoint)
// are written, everything else on the live peer is left alone.
type peerOp struct {
	Kind          opKind
	Key           wgtypes.Key
	Endpoint      netip.AddrPort // written when valid
	SetKeepalive  bool
	Keepalive     time.Duration
	SetAllowedIPs bool
	AllowedIPs    []netip.Prefix
}

// normalize validates a desired peer set and returns a copy in canonical
// form: endpoints unmapped, prefixes masked, sorted and deduplicated,
// keepalives in whole seconds. Duplicate keys, and one prefix claimed by two
// peers, are errors: the device would silently give it to only one of them.
func normalize(desired []Peer) ([]Peer, error) {
	out := make([]Peer, 0, len(desired))
	keys := make(map[wgtypes.Key]bool, len(desired))
	owner := make(map[netip.Prefix]wgtypes.Key)
	for _, p := range desired {
		if p.PublicKey == (wgtypes.Key{}) {
			return nil, fmt.Errorf("desired peer with zero public key")
		}
		if keys[p.PublicKey] {
			return nil, fmt.Errorf("peer %s listed twice", p.PublicKey)
		}
		keys[p.PublicKey] = true
		if p.Endpoint.IsValid() {
			if p.Endpoint.Port() == 0 || !p.Endpoint.Addr().IsValid() {
				return nil, fmt.Errorf("peer %s: endpoint %s has no port", p.PublicKey, p.Endpoint)
			}
			p.Endpoint = netip.AddrPortFrom(p.Endpoint.Addr().Unmap(), p.Endpoint.Port())
		} else {
			p.Endpoint = netip.AddrPort{}
		}
		if p.PersistentKeepalive < 0 || p.PersistentKeepalive > 65535*time.Second {
			return nil, fmt.Errorf("peer %s: persistent keepalive %s out of range 0..65535s", p.PublicKey, p.PersistentKeepalive)
		}
		p.PersistentKeepalive = p.PersistentKeepalive.Truncate(time.Second)
		ips, err := canonPrefixes(p.AllowedIPs)
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", p.PublicKey, err)
		}
		for _, ip := range ips {
			if o, ok := owner[ip]; ok {
				return nil, fmt.Errorf("allowed IP %s claimed by peers %s and %s", ip, o, p.PublicKey)
			}
			owner[ip] = p.PublicKey
		}
		p.AllowedIPs = ips
		out = append(out, p)
	}
	return out, nil
}

func canonPrefixes(in []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		if !p.IsValid() {
			return nil, fmt.Errorf("invalid allowed IP %v", p)
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("allowed IP %s is IPv4-mapped IPv6; write it as IPv4", p)
		}
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out), nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// diff computes the operations that turn the live peers into the desired
// (normalized) ones. lastEndpoint holds, per peer, the non-zero endpoint
// desired at the previous successful Apply. Operations come removals first,
// then updates, then additions, each sorted by key, so the output is
// deterministic.
func diff(live []PeerStats, desired []Peer, lastEndpoint map[wgtypes.Key]netip.AddrPort) ([]peerOp, Changes) {
	liveByKey := make(map[wgtypes.Key]*PeerStats, len(live))
	for i := range live {
		liveByKey[live[i].PublicKey] = &live[i]
	}
	want := make(map[wgtypes.Key]bool, len(desired))
	var rm, up, add []peerOp
	for _, d := range desired {
		want[d.PublicKey] = true
		l, ok := liveByKey[d.PublicKey]
		if !ok {
			add = append(add, peerOp{
				Kind: opAdd, Key: d.PublicKey, Endpoint: d.Endpoint,
				SetKeepalive: d.PersistentKeepalive != 0, Keepalive: d.PersistentKeepalive,
				SetAllowedIPs: true, AllowedIPs: d.AllowedIPs,
			})
			continue
		}
		op := peerOp{Kind: opUpdate, Key: d.PublicKey}
		changed := false
		if ep := d.Endpoint; ep.IsValid() && ep != l.Endpoint {
			// Roaming rule: only new information overrides what WireGuard
			// learned from the peer's own authenticated packets.
			if last, ok := lastEndpoint[d.PublicKey]; !ok || last != ep {
				op.Endpoint, changed = ep, true
			}
		}
		if d.PersistentKeepalive != l.PersistentKeepalive {
			op.SetKeepalive, op.Keepalive, changed = true, d.PersistentKeepalive, true
		}
		if liveIPs, err := canonPrefixes(l.AllowedIPs); err != nil || !slices.Equal(liveIPs, d.AllowedIPs) {
			op.SetAllowedIPs, op.AllowedIPs, changed = true, d.AllowedIPs, true
		}
		if changed {
			up = append(up, op)
		}
	}
	for _, l := range live {
		if !want[l.PublicKey] {
			rm = append(rm, peerOp{Kind: opRemove, Key: l.PublicKey})
		}
	}
	byKey := func(a, b peerOp) int { return bytes.Compare(a.Key[:], b.Key[:]) }
	slices.SortFunc(rm, byKey)
	slices.SortFunc(up, byKey)
	slices.SortFunc(add, byKey)
	ops := slices.Concat(rm, up, add)
	return ops, Changes{Added: len(add), Updated: len(up), Removed: len(rm)}
}
