package identity

import (
	"crypto"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nkeys"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Each key type below is distinct so that an identity key can never be
// passed where a WireGuard key or a CA key is meant.

// NodePublic is a node's Ed25519 identity public key: the name of a member.
type NodePublic [ed25519.PublicKeySize]byte

const nodePublicPrefix = "node:"

// String is "node:" followed by 64 hex digits.
func (k NodePublic) String() string { return nodePublicPrefix + hex.EncodeToString(k[:]) }

// ShortString is the first 8 hex digits, for humans.
func (k NodePublic) ShortString() string { return hex.EncodeToString(k[:4]) }

// IsZero reports whether k is the zero key.
func (k NodePublic) IsZero() bool { return k == NodePublic{} }

// Verify reports whether sig is k's signature of msg.
func (k NodePublic) Verify(msg, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(ed25519.PublicKey(k[:]), msg, sig)
}

// Ed25519 returns k as a standard library key.
func (k NodePublic) Ed25519() ed25519.PublicKey { return ed25519.PublicKey(k[:]) }

// MarshalText implements encoding.TextMarshaler (JSON, TOML).
func (k NodePublic) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *NodePublic) UnmarshalText(b []byte) error {
	p, err := ParseNodePublic(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// ParseNodePublic parses the String form.
func ParseNodePublic(s string) (NodePublic, error) {
	h, ok := strings.CutPrefix(s, nodePublicPrefix)
	if !ok {
		return NodePublic{}, fmt.Errorf("node key %q: missing %q prefix", s, nodePublicPrefix)
	}
	var k NodePublic
	if len(h) != 2*len(k) {
		return NodePublic{}, fmt.Errorf("node key %q: want %d hex digits", s, 2*len(k))
	}
	if _, err := hex.Decode(k[:], []byte(h)); err != nil {
		return NodePublic{}, fmt.Errorf("node key %q: %w", s, err)
	}
	return k, nil
}

// NKey is the node's NATS user public nkey ("U…"): the same Ed25519 key.
func (k NodePublic) NKey() string {
	s, err := nkeys.Encode(nkeys.PrefixByteUser, k[:])
	if err != nil {
		panic("identity: encode nkey: " + err.Error()) // only fails on a bad prefix
	}
	return string(s)
}

// NodePublicFromNKey maps a presented NATS user nkey back to the identity
// key it encodes.
func NodePublicFromNKey(nkey string) (NodePublic, error) {
	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(nkey))
	if err != nil {
		return NodePublic{}, fmt.Errorf("nkey %q: %w", nkey, err)
	}
	var k NodePublic
	if len(raw) != len(k) {
		return NodePublic{}, fmt.Errorf("nkey %q: %d key bytes, want %d", nkey, len(raw), len(k))
	}
	copy(k[:], raw)
	return k, nil
}

// WireGuardPublic is a node's X25519 WireGuard public key.
type WireGuardPublic [wgtypes.KeyLen]byte

// Key returns the key in the form wgctrl uses.
func (k WireGuardPublic) Key() wgtypes.Key { return wgtypes.Key(k) }

// String is the standard base64 form `wg` prints.
func (k WireGuardPublic) String() string { return wgtypes.Key(k).String() }

// IsZero reports whether k is the zero key.
func (k WireGuardPublic) IsZero() bool { return k == WireGuardPublic{} }

// MarshalText implements encoding.TextMarshaler.
func (k WireGuardPublic) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *WireGuardPublic) UnmarshalText(b []byte) error {
	p, err := wgtypes.ParseKey(string(b))
	if err != nil {
		return fmt.Errorf("wireguard key %q: %w", b, err)
	}
	*k = WireGuardPublic(p)
	return nil
}

// wireGuardInfo is the HKDF info string for the WireGuard key derivation.
// Changing it changes every node's WireGuard key.
const wireGuardInfo = "meshnode wireguard v1"

// Identity is a node's private identity: the seed and the keys derived from
// it. It is the only type in meshnode that holds private key material.
type Identity struct {
	seed Seed
	priv ed25519.PrivateKey
	pub  NodePublic
	wg   wgtypes.Key
}

// FromSeed derives every key of a node from its seed.
func FromSeed(s Seed) *Identity {
	id := &Identity{seed: s, priv: ed25519.NewKeyFromSeed(s[:])}
	copy(id.pub[:], id.priv.Public().(ed25519.PublicKey))
	// HKDF-SHA256(seed, info) so the X25519 key is independent of the
	// Ed25519 scalar, then clamped as X25519 expects.
	k, err := hkdf.Key(sha256.New, s[:], nil, wireGuardInfo, wgtypes.KeyLen)
	if err != nil {
		panic("identity: hkdf: " + err.Error()) // only fails for oversized outputs
	}
	copy(id.wg[:], k)
	id.wg[0] &= 248
	id.wg[31] = (id.wg[31] & 127) | 64
	return id
}

// String names the identity by its public key and never reveals the seed or
// the private keys.
func (id Identity) String() string { return "identity.Identity(" + id.pub.String() + ")" }

// Format prints String for every verb, so that no fmt verb (%v on a pointer,
// %d, %x, %#v, or a Member printed whole) falls through to the private
// fields.
func (id Identity) Format(f fmt.State, verb rune) { io.WriteString(f, id.String()) }

// Public is the node's identity key.
func (id *Identity) Public() NodePublic { return id.pub }

// Sign signs msg with the identity key. Callers prepend their own domain
// string so that a signature for one purpose never verifies for another.
func (id *Identity) Sign(msg []byte) []byte { return ed25519.Sign(id.priv, msg) }

// Signer returns the identity key as a crypto.Signer (TLS, x509).
func (id *Identity) Signer() crypto.Signer { return id.priv }

// WireGuardPrivate is the derived WireGuard private key, for the device.
func (id *Identity) WireGuardPrivate() wgtypes.Key { return id.wg }

// WireGuardPublic is the derived WireGuard public key.
func (id *Identity) WireGuardPublic() WireGuardPublic {
	return WireGuardPublic(id.wg.PublicKey())
}

// NKeyPair is the node's NATS user key pair (same Ed25519 key).
func (id *Identity) NKeyPair() nkeys.KeyPair {
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, id.seed[:])
	if err != nil {
		panic("identity: nkey from seed: " + err.Error()) // fixed prefix and size
	}
	return kp
}

// NKeySeedText is the "SU…" seed text of a .nk file that the nats CLI and
// nats.go accept. It is a secret: write it 0600.
func (id *Identity) NKeySeedText() []byte {
	s, err := id.NKeyPair().Seed()
	if err != nil {
		panic("identity: nkey seed: " + err.Error())
	}
	return s
}

// SignNonce signs a NATS server nonce the way nats clients do.
func (id *Identity) SignNonce(nonce []byte) []byte { return id.Sign(nonce) }
