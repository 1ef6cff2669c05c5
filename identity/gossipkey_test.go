package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"

	"golang.org/x/crypto/hkdf"
)

// goldenGossipKey is gossipKey("route-secret-for-golden", goldenCAPublic):
// frozen, since every member of a mesh must derive the same key.
const goldenGossipKey = "947136e991dc44a17f9538aab7b42b9b7aa0960a60bf8425c82209f441a8be2c"

func TestGoldenGossipKey(t *testing.T) {
	var ca CAPublic
	copy(ca[:], mustHex(t, goldenCAPublic))
	k := gossipKey("route-secret-for-golden", ca)
	if got := hex.EncodeToString(k[:]); got != goldenGossipKey {
		t.Fatalf("gossip key derivation changed:\n got %s\nwant %s", got, goldenGossipKey)
	}
	// The same derivation by an independent HKDF implementation.
	want := make([]byte, GossipKeySize)
	if _, err := io.ReadFull(hkdf.New(sha256.New, []byte("route-secret-for-golden"), ca[:], []byte("meshnode gossip v1")), want); err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(want) != goldenGossipKey {
		t.Fatalf("x/crypto/hkdf gives %x", want)
	}
	// Another CA or another secret: another key.
	other := ca
	other[0] ^= 1
	if gossipKey("route-secret-for-golden", other) == k || gossipKey("route-secret-for-golden!", ca) == k {
		t.Fatal("gossip key ignores the CA or the secret")
	}
}
