package boot

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/meshnode/meshnode/image/config"
	"github.com/vishvananda/netlink"
)

// Network timings.
var (
	LinkWait    = 30 * time.Second // for the NIC driver to create an interface
	CarrierWait = 10 * time.Second
	DHCPTimeout = 20 * time.Second // per attempt, before the static fallback
)

type netResult struct {
	iface  string
	addr   netip.Prefix
	gw     netip.Addr
	dns    []netip.Addr
	method string
}

// bringUpNetwork configures the underlay: DHCP first (unless turned off),
// the static address when DHCP gets no answer, and if neither is possible
// it keeps trying DHCP, saying so on the console, rather than giving up.
func bringUpNetwork(n config.Network) netResult {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	for attempt := 1; ; attempt++ {
		link, err := pickLink(n.Interface)
		if err != nil {
			say("meshnode: init: network: %v (retrying)", err)
			continue
		}
		name := link.Attrs().Name
		var r netResult
		if n.UseDHCP() {
			say("meshnode: init: network: DHCP on %s (carrier=%t)", name, hasCarrier(name))
			r, err = dhcp(link)
			if err != nil {
				say("meshnode: init: network: DHCP on %s: %v", name, err)
			}
		}
		if r.method == "" && n.Address != "" {
			r, err = static(link, n)
			if err != nil {
				say("meshnode: init: network: static %s on %s: %v", n.Address, name, err)
			}
		}
		if r.method != "" {
			writeResolvConf(r.dns)
			say("meshnode: init: network %s %s gateway %s dns %s (%s)", r.iface, r.addr, addrOrNone(r.gw), joinAddrs(r.dns), r.method)
			return r
		}
		say("meshnode: init: network: no address on %s yet (attempt %d), retrying", name, attempt)
		time.Sleep(2 * time.Second)
	}
}

// pickLink returns the named interface, or the first Ethernet interface
// (by name) that has a carrier, or failing that the first one at all.
func pickLink(want string) (netlink.Link, error) {
	deadline := time.Now().Add(LinkWait)
	for {
		if want != "" {
			if l, err := netlink.LinkByName(want); err == nil {
				_ = netlink.LinkSetUp(l)
				return l, nil
			}
		} else if links := ethernetLinks(); len(links) > 0 {
			for _, l := range links {
				_ = netlink.LinkSetUp(l)
			}
			carrierDeadline := time.Now().Add(CarrierWait)
			for {
				for _, l := range ethernetLinks() {
					if hasCarrier(l.Attrs().Name) {
						return l, nil
					}
				}
				if time.Now().After(carrierDeadline) {
					return links[0], nil
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		if time.Now().After(deadline) {
			if want != "" {
				return nil, fmt.Errorf("no interface %s after %s", want, LinkWait)
			}
			return nil, fmt.Errorf("no Ethernet interface after %s (is the NIC driver in the image?)", LinkWait)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func ethernetLinks() []netlink.Link {
	all, _ := netlink.LinkList()
	var out []netlink.Link
	for _, l := range all {
		a := l.Attrs()
		if l.Type() == "device" && a.EncapType == "ether" && len(a.HardwareAddr) == 6 {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attrs().Name < out[j].Attrs().Name })
	return out
}

func hasCarrier(name string) bool {
	b, err := os.ReadFile("/sys/class/net/" + name + "/carrier")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

func dhcp(link netlink.Link) (netResult, error) {
	name := link.Attrs().Name
	c, err := nclient4.New(name, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(4))
	if err != nil {
		return netResult{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), DHCPTimeout)
	lease, err := c.Request(ctx)
	cancel()
	if err != nil {
		c.Close()
		return netResult{}, err
	}
	r, err := applyLease(link, lease.ACK)
	if err != nil {
		c.Close()
		return netResult{}, err
	}
	go renewLoop(c, link, lease)
	return r, nil
}

func applyLease(link netlink.Link, ack *dhcpv4.DHCPv4) (netResult, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok {
		return netResult{}, fmt.Errorf("lease without an address")
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = net.CIDRMask(32, 32) // no mask: a /32 with the gateway on-link
	}
	ones, _ := mask.Size()
	r := netResult{iface: link.Attrs().Name, addr: netip.PrefixFrom(ip, ones), method: "dhcp"}
	if rs := ack.Router(); len(rs) > 0 {
		r.gw, _ = netip.AddrFromSlice(rs[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			r.dns = append(r.dns, a)
		}
	}
	return r, configure(link, r)
}

// renewLoop renews the lease at half its lifetime, and asks again from
// scratch when a renewal fails.
func renewLoop(c *nclient4.Client, link netlink.Link, lease *nclient4.Lease) {
	for {
		d := lease.ACK.IPAddressLeaseTime(time.Hour) / 2
		time.Sleep(max(d, 30*time.Second))
		ctx, cancel := context.WithTimeout(context.Background(), DHCPTimeout)
		nl, err := c.Renew(ctx, lease)
		if err != nil {
			nl, err = c.Request(ctx)
		}
		cancel()
		if err != nil {
			say("meshnode: init: network: DHCP renewal on %s: %v", link.Attrs().Name, err)
			continue
		}
		lease = nl
		if _, err := applyLease(link, lease.ACK); err != nil {
			say("meshnode: init: network: applying renewed lease: %v", err)
		}
	}
}

func static(link netlink.Link, n config.Network) (netResult, error) {
	p, err := netip.ParsePrefix(n.Address)
	if err != nil {
		return netResult{}, err
	}
	r := netResult{iface: link.Attrs().Name, addr: p, method: "static"}
	if n.Gateway != "" {
		r.gw, _ = netip.ParseAddr(n.Gateway)
	}
	for _, d := range n.DNS {
		a, _ := netip.ParseAddr(d)
		r.dns = append(r.dns, a)
	}
	return r, configure(link, r)
}

func configure(link netlink.Link, r netResult) error {
	ipn := &net.IPNet{IP: r.addr.Addr().AsSlice(), Mask: net.CIDRMask(r.addr.Bits(), r.addr.Addr().BitLen())}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("address %s on %s: %w", r.addr, r.iface, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s up: %w", r.iface, err)
	}
	if r.gw.IsValid() {
		rt := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: r.gw.AsSlice()}
		if !r.addr.Contains(r.gw) {
			rt.Flags = int(netlink.FLAG_ONLINK)
		}
		if err := netlink.RouteReplace(rt); err != nil {
			return fmt.Errorf("default route via %s: %w", r.gw, err)
		}
	}
	return nil
}

func writeResolvConf(dns []netip.Addr) {
	if len(dns) == 0 {
		return
	}
	var b strings.Builder
	for _, d := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	_ = os.MkdirAll("/etc", 0o755)
	if err := os.WriteFile("/etc/resolv.conf", []byte(b.String()), 0o644); err != nil {
		say("meshnode: init: /etc/resolv.conf: %v", err)
	}
}

func addrOrNone(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}

func joinAddrs(as []netip.Addr) string {
	if len(as) == 0 {
		return "none"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}
