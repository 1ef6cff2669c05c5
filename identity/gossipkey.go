package identity

import (
	"crypto/hkdf"
	"crypto/sha256"
)

// gossipKeyInfo separates the gossip key from every other use of the route
// secret.
const gossipKeyInfo = "meshnode gossip v1"

// GossipKeySize is the gossip key's length: AES-256 in memberlist's keyring.
const GossipKeySize = 32

// GossipKey is the mesh-wide key that encrypts and authenticates every
// gossip packet and stream (memberlist's keyring, AES-256-GCM). It is
// derived from the route secret, which every member receives at enrollment
// and keeps 0600, so no second secret has to be delivered, stored or
// recovered by a member that was offline: a local process on a member box
// that can reach the overlay, but not read the state directory, cannot
// speak gossip. The CA's public key is the salt, so two meshes that somehow
// share a route secret still get different keys.
func (m *Member) GossipKey() [GossipKeySize]byte {
	return gossipKey(m.RouteSecret, m.Trust.Public)
}

func gossipKey(routeSecret string, ca CAPublic) [GossipKeySize]byte {
	k, err := hkdf.Key(sha256.New, []byte(routeSecret), ca[:], gossipKeyInfo, GossipKeySize)
	if err != nil {
		panic("identity: hkdf: " + err.Error()) // only for lengths beyond 255×32
	}
	return [GossipKeySize]byte(k)
}
