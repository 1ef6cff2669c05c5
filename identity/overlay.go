package identity

import (
	"crypto/sha256"
	"net/netip"
)

// MeshPrefix is the mesh's IPv6 ULA /48: fd + the first 40 bits of
// SHA-256(CA public key). Every member computes the same prefix from the CA
// it trusts, so two meshes never share one by accident.
func MeshPrefix(ca CAPublic) netip.Prefix {
	sum := sha256.Sum256(ca[:])
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:6], sum[:5])
	return netip.PrefixFrom(netip.AddrFrom16(a), 48)
}

// OverlayAddr is a node's overlay address: the mesh /48 followed by the
// first 80 bits of SHA-256(identity key). Any member can verify a claimed
// address from the key alone.
func OverlayAddr(mesh netip.Prefix, node NodePublic) netip.Addr {
	p := mesh.Masked().Addr().As16()
	sum := sha256.Sum256(node[:])
	copy(p[6:], sum[:10])
	return netip.AddrFrom16(p)
}
