package identity

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestNKeyRoundTrips(t *testing.T) {
	id := newID(t)
	pub := id.Public()

	// The seed text is what a .nk file holds: nkeys reads it back to the
	// same user key.
	kp, err := nkeys.FromSeed(id.NKeySeedText())
	if err != nil {
		t.Fatalf("nkeys.FromSeed(NKeySeedText()): %v", err)
	}
	if got, _ := kp.PublicKey(); got != pub.NKey() {
		t.Errorf("nkeys.FromSeed public = %s, NKey() = %s", got, pub.NKey())
	}
	if !nkeys.IsValidPublicUserKey(pub.NKey()) {
		t.Errorf("NKey() %s is not a valid user public key", pub.NKey())
	}

	// Presented nkey → identity key.
	back, err := NodePublicFromNKey(pub.NKey())
	if err != nil || back != pub {
		t.Errorf("NodePublicFromNKey(NKey()) = %s, %v; want %s", back, err, pub)
	}

	// A nonce signature made our way verifies the way a NATS server checks
	// it (nkeys.FromPublicKey(nkey).Verify).
	nonce := []byte("server nonce 0123456789")
	sig := id.SignNonce(nonce)
	vk, err := nkeys.FromPublicKey(pub.NKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := vk.Verify(nonce, sig); err != nil {
		t.Errorf("server-side nkey verification of SignNonce: %v", err)
	}
	if !pub.Verify(nonce, sig) {
		t.Errorf("NodePublic.Verify rejects SignNonce")
	}
	if pub.Verify(append(nonce, 'x'), sig) || pub.Verify(nonce, sig[:63]) {
		t.Errorf("NodePublic.Verify accepts a wrong message or short signature")
	}

	// nats.go reads the .nk file the way the nats CLI does.
	nk := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(nk, append(id.NKeySeedText(), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	opt, err := nats.NkeyOptionFromSeed(nk)
	if err != nil {
		t.Fatalf("nats.NkeyOptionFromSeed: %v", err)
	}
	var o nats.Options
	if err := opt(&o); err != nil {
		t.Fatal(err)
	}
	if o.Nkey != pub.NKey() {
		t.Errorf("nats.go read nkey %s from the file, want %s", o.Nkey, pub.NKey())
	}
	csig, err := o.SignatureCB(nonce)
	if err != nil {
		t.Fatalf("nats.go signature callback: %v", err)
	}
	if !bytes.Equal(csig, sig) {
		t.Errorf("nats.go signs the nonce differently from SignNonce")
	}
}

func TestNodePublicFromNKeyRejects(t *testing.T) {
	id := FromSeed(seedCounting())
	good := id.Public().NKey()
	seedText := string(id.NKeySeedText())
	account, _ := nkeys.Encode(nkeys.PrefixByteAccount, id.Public().Ed25519())
	server, _ := nkeys.Encode(nkeys.PrefixByteServer, id.Public().Ed25519())
	short, _ := nkeys.Encode(nkeys.PrefixByteUser, make([]byte, 31))
	flip := []byte(good)
	flip[10] ^= 'A' ^ 'B' // stays in the base32 alphabet; the CRC catches it
	if flip[10] == good[10] {
		t.Fatal("test setup: flip did nothing")
	}
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"account prefix", string(account)},
		{"server prefix", string(server)},
		{"seed, not a public key", seedText},
		{"corrupted character", string(flip)},
		{"truncated", good[:len(good)-4]},
		{"lowercase", strings.ToLower(good)},
		{"31 key bytes", string(short)},
		{"node string form", id.Public().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := NodePublicFromNKey(tc.in)
			if err == nil {
				t.Fatalf("NodePublicFromNKey(%q) = %s, want an error", tc.in, k)
			}
			if !k.IsZero() {
				t.Errorf("rejected nkey still returned key %s", k)
			}
		})
	}
}

func TestNodePublicText(t *testing.T) {
	pub := FromSeed(seedCounting()).Public()
	b, err := json.Marshal(map[string]NodePublic{"k": pub})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"k":"node:` + hex.EncodeToString(pub[:]) + `"}`; string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
	var m map[string]NodePublic
	if err := json.Unmarshal(b, &m); err != nil || m["k"] != pub {
		t.Errorf("JSON round trip = %v, %v", m, err)
	}
	if got := pub.ShortString(); got != hex.EncodeToString(pub[:4]) {
		t.Errorf("ShortString = %s", got)
	}
	if pub.IsZero() || !(NodePublic{}).IsZero() {
		t.Errorf("IsZero wrong")
	}

	h := hex.EncodeToString(pub[:])
	for _, tc := range []struct{ name, in, want string }{
		{"no prefix", h, "prefix"},
		{"wrong prefix", "ca:" + h, "prefix"},
		{"short", "node:" + h[:62], "hex digits"},
		{"long", "node:" + h + "00", "hex digits"},
		{"not hex", "node:" + strings.Repeat("zz", 32), "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNodePublic(tc.in)
			wantErr(t, err, tc.want)
			var k NodePublic
			if err := k.UnmarshalText([]byte(tc.in)); err == nil {
				t.Errorf("UnmarshalText(%q) accepted", tc.in)
			}
		})
	}
}

func TestWireGuardPublicText(t *testing.T) {
	wg := FromSeed(seedCounting()).WireGuardPublic()
	txt, _ := wg.MarshalText()
	var back WireGuardPublic
	if err := back.UnmarshalText(txt); err != nil || back != wg {
		t.Errorf("WireGuardPublic text round trip = %s, %v; want %s", back, err, wg)
	}
	if wg.IsZero() || !(WireGuardPublic{}).IsZero() {
		t.Errorf("IsZero wrong")
	}
	if wg.Key() != wgtypes.Key(wg) {
		t.Errorf("Key() differs")
	}
	for _, bad := range []string{"", "not base64!", "AAAA", string(txt[:len(txt)-2])} {
		if err := back.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) accepted", bad)
		}
	}
}

// TestDerivationsDiffer shows the derivations are functions of the seed:
// different seeds, different keys everywhere; same seed, same keys.
func TestDerivationsDiffer(t *testing.T) {
	a, b := newID(t), newID(t)
	if a.Public() == b.Public() || a.WireGuardPublic() == b.WireGuardPublic() || a.Public().NKey() == b.Public().NKey() {
		t.Fatalf("two random seeds gave a shared key")
	}
	a2 := FromSeed(a.seed)
	if a2.Public() != a.Public() || a2.WireGuardPrivate() != a.WireGuardPrivate() {
		t.Fatalf("FromSeed is not deterministic")
	}
	// The clamping invariants of an X25519 private key.
	for _, id := range []*Identity{a, b} {
		k := id.WireGuardPrivate()
		if k[0]&7 != 0 || k[31]&128 != 0 || k[31]&64 == 0 {
			t.Errorf("WireGuard private key %s is not clamped", k)
		}
	}
}

// TestSecretsNeverFormatted: a seed, an identity or a CA that ends up in a
// log line by accident must not leak key material, whatever the verb.
func TestSecretsNeverFormatted(t *testing.T) {
	seed := seedCounting()
	id := FromSeed(seed)
	ca := fixedCA(t)
	// What must never appear: the seed (hex, raw bytes as fmt prints a
	// byte array/slice) and the private keys.
	secrets := map[string][]byte{
		"seed":       seed[:],
		"ed25519":    id.priv,
		"wireguard":  id.wg[:],
		"CA key":     ca.key,
		"CA key raw": ca.key.Seed(),
	}
	forms := func(b []byte) []string {
		return []string{
			hex.EncodeToString(b[:12]),
			strings.ToUpper(hex.EncodeToString(b[:12])),
			strings.Trim(fmt.Sprint(b[:12]), "[]"),
			fmt.Sprintf("%#v", b[:12])[len("[]byte{"):][:30],
			string(b[:12]),
		}
	}
	// The redacted forms still say which identity or CA it is.
	if got := fmt.Sprint(id); !strings.Contains(got, id.Public().String()) {
		t.Errorf("fmt of *Identity = %q, want it to name %s", got, id.Public())
	}
	if got := fmt.Sprint(ca); !strings.Contains(got, ca.Public.String()) || !strings.Contains(got, "acme") {
		t.Errorf("fmt of *CA = %q, want it to name the mesh and %s", got, ca.Public)
	}
	values := map[string]any{
		"Seed": seed, "*Seed": &seed, "*Identity": id, "Identity": *id,
		"*CA": ca, "CA": *ca, "Member": &Member{ID: id, CA: ca},
		"Member value": Member{ID: id, CA: ca},
	}
	for vname, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
			out := fmt.Sprintf(verb, v)
			for sname, s := range secrets {
				for _, f := range forms(s) {
					if strings.Contains(out, f) {
						t.Errorf("fmt %s of %s leaks the %s: %s", verb, vname, sname, out)
					}
				}
			}
		}
	}
}
