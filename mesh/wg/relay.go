package wg

import "net/netip"

// A hub relays for members that cannot reach each other directly (both
// behind NATs that map per destination): each of them routes the other's
// /128 through the hub, so the hub receives, decrypted, packets from one
// member to another and must send them on, encrypted to the other. That is
// the phones' userspace forwarding (forward.go) for every overlay address:
// wireguard-go's AllowedIPs already vouch for the source (a member's peer
// on the hub holds only its own /128), and the destination's peer holds its
// /128, so nothing but the mesh prefix needs checking. The hub decrypts and
// re-encrypts relayed traffic: it sees the overlay packets (NATS is still
// TLS inside them).

// SetRelay makes the device forward, in userspace, every packet between
// two overlay addresses that are not its own (on) or only its phones'
// (off, the default). Only hubs turn it on.
func (d *Device) SetRelay(on bool) {
	d.fwdMu.Lock()
	defer d.fwdMu.Unlock()
	d.relayAll = on
	d.storeForward()
}

// relayed reports whether the forward set relays between members.
func (s *forwardSet) relayed(dst netip.Addr) bool { return s.all && dst.IsValid() }
