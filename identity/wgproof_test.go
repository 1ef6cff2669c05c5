package identity

import (
	"encoding/hex"
	"testing"
)

// The proof is a wire format: frozen with a golden vector.
func TestWireGuardProofGolden(t *testing.T) {
	a, b := FromSeed(Seed{1}), FromSeed(Seed{2})
	const domain = "meshnode test proof"
	msg := []byte("message")
	pa, err := a.WireGuardProof(b.WireGuardPublic(), domain, msg)
	if err != nil {
		t.Fatal(err)
	}
	const want = "9f8a60863547c8216b93b9cde5585e5fb1449d5dc2e0632a087a513c387ac9c8"
	if got := hex.EncodeToString(pa); got != want {
		t.Errorf("proof of seed 1 to seed 2 = %s, want %s", got, want)
	}
	// Both ends compute the same key, so either can check the other.
	if !b.VerifyWireGuardProof(a.WireGuardPublic(), domain, msg, pa) {
		t.Error("the peer does not accept a correct proof")
	}
	c := FromSeed(Seed{3})
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"another message", b.VerifyWireGuardProof(a.WireGuardPublic(), domain, []byte("massage"), pa)},
		{"another domain", b.VerifyWireGuardProof(a.WireGuardPublic(), "meshnode other", msg, pa)},
		{"claimed by a third key", b.VerifyWireGuardProof(c.WireGuardPublic(), domain, msg, pa)},
		{"checked by a third node", c.VerifyWireGuardProof(a.WireGuardPublic(), domain, msg, pa)},
		{"truncated", b.VerifyWireGuardProof(a.WireGuardPublic(), domain, msg, pa[:31])},
		{"empty", b.VerifyWireGuardProof(a.WireGuardPublic(), domain, msg, nil)},
	} {
		if tc.ok {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	// A low-order peer key gives a zero secret: refused, not a proof
	// anyone could compute.
	if _, err := a.WireGuardProof(WireGuardPublic{}, domain, msg); err == nil {
		t.Error("proof to the zero key: no error")
	}
	if a.VerifyWireGuardProof(WireGuardPublic{}, domain, msg, make([]byte, WireGuardProofSize)) {
		t.Error("zero key verified a proof")
	}
}
