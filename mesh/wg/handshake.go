package wg

import (
	"fmt"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Handshake asks WireGuard to handshake with peer k now. Two callers: the
// path machine's direct probes (wireguard-go then retries every 5 s for
// 90 s on its own), and mesh.Node before it believes gossip that a member
// is dead: the answer, seen as a newer PeerStats.LastHandshake, proves
// that the member's meshnode process is running (its WireGuard device
// lives in it). A live peer answers within one round trip.
//
// wireguard-go sends nothing when an initiation or a response went out
// less than 5 s ago (REKEY_TIMEOUT); that handshake's answer then counts,
// and it retries on its own. An error means WireGuard cannot ask at all:
// the peer is not on the device, or the device has no endpoint for it (a
// member behind NAT that calls in).
func (d *Device) Handshake(k wgtypes.Key) error {
	peer := d.dev.LookupPeer(device.NoisePublicKey(k))
	if peer == nil {
		return fmt.Errorf("wg: interface %s: no peer %s", d.name, k)
	}
	if err := peer.SendHandshakeInitiation(false); err != nil {
		return fmt.Errorf("wg: interface %s: handshake with %s: %w", d.name, k, err)
	}
	return nil
}
