package netns

import (
	"fmt"
	"os"
	"strings"
)

// NAT is a home router in a namespace: a WAN leg on a bridge (the lab's
// "internet") and a LAN leg, a veth to one box behind it, whose traffic it
// masquerades with nftables.
//
//   - Cone (Symmetric false): `masquerade` keeps the source port for every
//     destination (endpoint-independent mapping, like most home routers).
//   - Symmetric: `masquerade random` picks a port per destination.
//
// Either way inbound traffic is accepted only where conntrack has an entry
// (the box sent there first; Linux filters by address and port), and new
// inbound connections on the WAN are dropped before conntrack confirms
// them. That drop is what home routers' firewalls do, and it matters: an
// unsolicited packet the router accepted would leave a conntrack entry that
// makes masquerade pick another port for the box's own later packet to the
// same peer, so two boxes punching at each other would never meet. UDP
// conntrack timeouts are the kernel's (30 s unreplied, 120 s assured).
type NAT struct {
	NS        *NS
	WANIP     string // on the bridge
	LANNet    string // e.g. 192.168.7.0/24: the router is .1, the box .2
	Symmetric bool
	lan       string // the router's LAN interface
}

// NewNAT creates a router on br with WAN address wanCIDR (e.g.
// "10.231.0.101/24") and a LAN 192.168.lan.0/24. The caller deletes it.
func NewNAT(br *Bridge, wanCIDR string, lan int, symmetric bool) (*NAT, error) {
	ns, err := Create("nat")
	if err != nil {
		return nil, err
	}
	n := &NAT{NS: ns, WANIP: strings.Split(wanCIDR, "/")[0], LANNet: fmt.Sprintf("192.168.%d.0/24", lan), Symmetric: symmetric}
	fail := func(err error) (*NAT, error) { ns.Delete(); return nil, err }
	if err := br.Connect(ns, "wan0", wanCIDR); err != nil {
		return fail(err)
	}
	// Forwarding inside the router's own namespace (per namespace for
	// IPv4): this is the lab's router, not meshnode.
	if _, err := ns.Run("sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return fail(err)
	}
	masq := "masquerade"
	if symmetric {
		masq = "masquerade random"
	}
	rules := fmt.Sprintf(`table ip meshlab_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" %s
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan0" ct state new drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "wan0" ct state new drop
	}
}
`, masq)
	f, err := os.CreateTemp("", "meshlab-nft-*.conf")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(f.Name())
	f.WriteString(rules)
	f.Close()
	if _, err := ns.Run("nft", "-f", f.Name()); err != nil {
		return fail(err)
	}
	return n, nil
}

// Gateway is the router's LAN address.
func (n *NAT) Gateway() string { return strings.TrimSuffix(n.LANNet, "0/24") + "1" }

// BoxIP is the address Attach gives the box.
func (n *NAT) BoxIP() string { return strings.TrimSuffix(n.LANNet, "0/24") + "2" }

// Attach puts box behind the router: eth0 at BoxIP()/24, default route via
// the router.
func (n *NAT) Attach(box *NS) error {
	if n.lan != "" {
		return fmt.Errorf("NAT %s: a box is already attached", n.NS.Name)
	}
	ra, rb, err := CreateVeth(n.NS, n.Gateway()+"/24", box, n.BoxIP()+"/24")
	if err != nil {
		return err
	}
	n.lan = ra
	if _, err := box.Run("ip", "link", "set", rb, "name", "eth0"); err != nil {
		// Renaming needs the link down; do it the long way.
		for _, s := range [][]string{{"link", "set", rb, "down"}, {"link", "set", rb, "name", "eth0"}, {"link", "set", "eth0", "up"}} {
			if _, err := box.Run("ip", s...); err != nil {
				return err
			}
		}
	}
	_, err = box.Run("ip", "route", "add", "default", "via", n.Gateway())
	return err
}

// FlushConntrack forgets every mapping: the box's next packet to each
// destination gets a new one (a new port, behind a symmetric NAT).
func (n *NAT) FlushConntrack() error {
	_, err := n.NS.Run("conntrack", "-F")
	return err
}

// Delete removes the router.
func (n *NAT) Delete() { n.NS.Delete() }

// SetSymmetric switches the router between `masquerade` and `masquerade
// random` and forgets every mapping: a path that was closed may open.
func (n *NAT) SetSymmetric(symmetric bool) error {
	masq := "masquerade"
	if symmetric {
		masq = "masquerade random"
	}
	if _, err := n.NS.Run("nft", "flush", "chain", "ip", "meshlab_nat", "postrouting"); err != nil {
		return err
	}
	if _, err := n.NS.Run("nft", "add", "rule", "ip", "meshlab_nat", "postrouting", "oifname", "wan0", masq); err != nil {
		return err
	}
	n.Symmetric = symmetric
	return n.FlushConntrack()
}
