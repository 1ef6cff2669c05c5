package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
)

// WireGuardProofSize is the size of a WireGuardProof.
const WireGuardProofSize = sha256.Size

// WireGuardProof proves to the holder of the WireGuard key peer that this
// node holds the private half of its own WireGuard key, for msg:
//
//	secret = X25519(own WireGuard private key, peer)
//	key    = HKDF-SHA256(secret, salt none, info = domain || lo || hi)
//	proof  = HMAC-SHA256(key, msg)
//
// where lo and hi are the two public keys in ascending byte order, so that
// both ends derive the same key. Only the two key holders can compute it.
// An identity signature cannot stand in for it: the WireGuard key does not
// derive from the identity key, so a node signing "my WireGuard key is K"
// proves nothing about K, and a ticket for a copied K let a second member
// claim another member's tunnel. A peer key of low order (whose shared
// secret is zero) is an error.
func (id *Identity) WireGuardProof(peer WireGuardPublic, domain string, msg []byte) ([]byte, error) {
	priv, err := ecdh.X25519().NewPrivateKey(id.wg[:])
	if err != nil {
		return nil, fmt.Errorf("wireguard proof: %w", err)
	}
	pub, err := ecdh.X25519().NewPublicKey(peer[:])
	if err != nil {
		return nil, fmt.Errorf("wireguard proof: peer key %s: %w", peer, err)
	}
	secret, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("wireguard proof: peer key %s: %w", peer, err)
	}
	own := id.WireGuardPublic()
	lo, hi := own[:], peer[:]
	if bytes.Compare(lo, hi) > 0 {
		lo, hi = hi, lo
	}
	info := append(append([]byte(domain), lo...), hi...)
	key, err := hkdf.Key(sha256.New, secret, nil, string(info), sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("wireguard proof: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(msg)
	return mac.Sum(nil), nil
}

// VerifyWireGuardProof reports whether proof is the holder of peer's
// private key proving it to this node for msg (see WireGuardProof).
func (id *Identity) VerifyWireGuardProof(peer WireGuardPublic, domain string, msg, proof []byte) bool {
	want, err := id.WireGuardProof(peer, domain, msg)
	return err == nil && hmac.Equal(want, proof)
}
