package wg

import (
	"fmt"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// AskHandshake asks WireGuard to handshake with peer k now: the answer,
// seen as a newer PeerStats.LastHandshake, proves that the member's
// meshnode process is running (its WireGuard device lives in it), which is
// what mesh.Node wants to know before it believes gossip that the member
// is dead. A live peer answers within one round trip.
//
// wireguard-go sends nothing when an initiation went out less than 5 s
// ago (REKEY_TIMEOUT); that initiation's answer then counts, and it
// retries on its own. An error means WireGuard cannot ask at all: the peer
// is not on the device, or the device has no endpoint for it (a member
// behind NAT that calls in).
func (d *Device) AskHandshake(k wgtypes.Key) error {
	peer := d.dev.LookupPeer(device.NoisePublicKey(k))
	if peer == nil {
		return fmt.Errorf("wg: interface %s: no peer %s", d.name, k)
	}
	if err := peer.SendHandshakeInitiation(false); err != nil {
		return fmt.Errorf("wg: interface %s: handshake with %s: %w", d.name, k, err)
	}
	return nil
}
