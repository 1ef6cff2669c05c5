// Package identity owns everything a meshnode derives from its one secret
// and everything the mesh CA signs: the 32-byte seed and the state directory
// it lives in; the typed keys derived from it (Ed25519 identity, NATS user
// nkey, WireGuard X25519 key); overlay IPv6 addresses; the mesh CA, the
// compact membership tickets and x509 node certificates it issues, the
// revocations it signs, and the one-time join tokens it hands out; the
// gossip key epochs (epoch 0 derived from the route secret, rotated ones
// random, each announced by a CA-signed GossipKeyNotice), their
// install/use/retire schedule and the gossip.keys file.
//
// Every derivation is frozen by golden vectors in the tests, every signature
// is domain-separated, and every wire format starts with a version byte and
// has a strict decoder: trailing bytes, unknown versions and bad lengths are
// errors, never guesses.
package identity
