package update

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// The golden manifest: the frozen contract of the v1 encoding and its
// signature. Boxes in the field read manifests that admins signed with
// this encoding; if this test fails, the change is a new ManifestVersion,
// not an update of the literal.
const (
	goldenCAPub    = "dde3bccec7f3a66a1115f45d720f4dc135c3ae7c4e22dca38fdb1efd6a495ff8"
	goldenManifest = "010000000000000002000000006b36ec8005616d6436340676312e322e300307766d6c696e757a0000000000000010b62671036a1588465c76bd23af7140a06b253b948e6ebcc7ac521374d74642e70a696e697472642e696d670000000000000013e3211b76be145a06b1087657f12baba7b5a4136b6e20362ae3ab07bdc47b07f607636d646c696e650000000000000010a1afcccb22b337868b29a1e0852e44655509ccd8ed5d3e1d633044a43800d857b9bef12177642648db5062528156e89bfffaba50bc2f5384c4ac3c1e6e009415f5d64571000608d2024e7e85d28307b8590d706c538de804ef00880ea2ee8ef9d54209381e44050a"
)

// testCA is the golden CA: seed c0 c1 … df.
func testCA(t testing.TB) (ed25519.PrivateKey, [32]byte) {
	t.Helper()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(0xc0 + i)
	}
	key := ed25519.NewKeyFromSeed(seed)
	var pub [32]byte
	copy(pub[:], key.Public().(ed25519.PublicKey))
	return key, pub
}

func goldenFiles() map[string][]byte {
	f := map[string][]byte{}
	for _, n := range FileNames {
		f[n] = []byte(n + " contents")
	}
	return f
}

func goldenUnsigned(t testing.TB) *Manifest {
	t.Helper()
	b, err := NewBundle(2, "amd64", "v1.2.0", goldenFiles())
	if err != nil {
		t.Fatal(err)
	}
	b.Manifest.NotAfter = time.Unix(1798761600, 0).UTC() // 2027-01-01
	return b.Manifest
}

func TestManifestGolden(t *testing.T) {
	key, pub := testCA(t)
	if hex.EncodeToString(pub[:]) != goldenCAPub {
		t.Fatalf("CA public key %x", pub)
	}
	m := goldenUnsigned(t)
	if err := m.Sign(key, pub); err != nil {
		t.Fatal(err)
	}
	got := m.Marshal()
	if hex.EncodeToString(got) != goldenManifest {
		t.Fatalf("encoding changed:\n got %x\nwant %s", got, goldenManifest)
	}

	// The same bytes built by hand from the format description.
	var want []byte
	want = append(want, 1)
	want = binary.BigEndian.AppendUint64(want, 2)
	want = binary.BigEndian.AppendUint64(want, 1798761600)
	want = append(want, 5)
	want = append(want, "amd64"...)
	want = append(want, 6)
	want = append(want, "v1.2.0"...)
	want = append(want, 3)
	for _, n := range []string{"vmlinuz", "initrd.img", "cmdline"} {
		want = append(want, byte(len(n)))
		want = append(want, n...)
		data := []byte(n + " contents")
		want = binary.BigEndian.AppendUint64(want, uint64(len(data)))
		sum := sha256.Sum256(data)
		want = append(want, sum[:]...)
	}
	id := identity.CAPublic(pub).KeyID() // the key id is identity's
	want = append(want, id[:]...)
	sig := ed25519.Sign(key, append([]byte("meshnode update manifest v1"), want...))
	want = append(want, sig...)
	if !bytes.Equal(got, want) {
		t.Fatalf("package encoding differs from the hand-built one:\n got %x\nwant %x", got, want)
	}

	back, err := ParseManifest(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Marshal(), got) || back.Generation != 2 || back.Release != "v1.2.0" || back.Arch != "amd64" || !back.NotAfter.Equal(m.NotAfter) {
		t.Fatalf("round trip: %+v", back)
	}
	if err := back.Verify(pub); err != nil {
		t.Fatal(err)
	}
}

func TestManifestDomainSeparated(t *testing.T) {
	key, pub := testCA(t)
	m := goldenUnsigned(t)
	// A CA signature over the same bytes without the domain, or under
	// another record's domain, must not verify as a manifest.
	m.CAKeyID = identity.CAPublic(pub).KeyID()
	for _, domain := range []string{"", "meshnode revocation v1", "meshnode ticket v1"} {
		copy(m.Signature[:], ed25519.Sign(key, append([]byte(domain), m.body()...)))
		if err := m.Verify(pub); err == nil {
			t.Fatalf("a signature under domain %q verified", domain)
		}
	}
}

func TestParseManifestStrict(t *testing.T) {
	good, _ := hex.DecodeString(goldenManifest)
	mutate := func(f func(m *Manifest)) []byte {
		m, err := ParseManifest(good)
		if err != nil {
			t.Fatal(err)
		}
		f(m)
		return m.Marshal()
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"version 2", append([]byte{2}, good[1:]...), "unknown version 2"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"trailing", append(bytes.Clone(good), 0), "1 trailing bytes"},
		{"generation 0", mutate(func(m *Manifest) { m.Generation = 0 }), "generation 0"},
		{"arch empty", mutate(func(m *Manifest) { m.Arch = "" }), "arch is 0 bytes"},
		{"arch upper", mutate(func(m *Manifest) { m.Arch = "AMD64" }), "arch \"AMD64\""},
		{"release space", mutate(func(m *Manifest) { m.Release = "v1 2" }), "release"},
		{"release newline", mutate(func(m *Manifest) { m.Release = "v1\n2" }), "release"},
		{"file renamed", mutate(func(m *Manifest) { m.Files[1].Name = "initrd.gz" }), `file 2 is "initrd.gz", want "initrd.img"`},
		{"file order", mutate(func(m *Manifest) { m.Files[0], m.Files[1] = m.Files[1], m.Files[0] }), `file 1 is "initrd.img"`},
		{"kernel too big", mutate(func(m *Manifest) { m.Files[0].Size = MaxKernelSize + 1 }), "vmlinuz size"},
		{"empty file", mutate(func(m *Manifest) { m.Files[2].Size = 0 }), "cmdline size 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest(tc.in)
			if err == nil || m != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseManifest = %v, %v; want error containing %q", m, err, tc.want)
			}
		})
	}
	// Four files: the count is checked before anything else of the list.
	four := bytes.Clone(good)
	four[1+8+8+1+5+1+6] = 4
	if _, err := ParseManifest(four); err == nil || !strings.Contains(err.Error(), "4 files") {
		t.Fatalf("four files: %v", err)
	}
}

func TestCheck(t *testing.T) {
	key, pub := testCA(t)
	now := time.Unix(1790000000, 0)
	signed := func(f func(m *Manifest)) *Manifest {
		m := goldenUnsigned(t)
		if f != nil {
			f(m)
		}
		if err := m.Sign(key, pub); err != nil {
			t.Fatal(err)
		}
		return m
	}
	p := Policy{CA: pub, Arch: "amd64", Installed: 1, Now: now}
	if err := Check(signed(nil), p); err != nil {
		t.Fatalf("good manifest refused: %v", err)
	}
	_, otherPub := func() (ed25519.PrivateKey, [32]byte) {
		k := ed25519.NewKeyFromSeed(make([]byte, 32))
		var p [32]byte
		copy(p[:], k.Public().(ed25519.PublicKey))
		return k, p
	}()
	flipped := signed(nil)
	flipped.Signature[10] ^= 1
	altered := signed(nil)
	altered.Files[1].SHA256[0] ^= 1 // a different initramfs under the old signature
	for _, tc := range []struct {
		name string
		m    *Manifest
		p    Policy
		kind error
		msg  string
	}{
		{"unsigned", goldenUnsigned(t), p, ErrUnsigned, "meshnode update sign"},
		{"flipped signature", flipped, p, ErrBadSignature, "bad signature: the mesh CA's signature does not verify"},
		{"altered after signing", altered, p, ErrBadSignature, "bad signature: the mesh CA's signature does not verify"},
		{"other CA", signed(nil), Policy{CA: otherPub, Arch: "amd64", Now: now}, ErrBadSignature, "signed by another CA"},
		{"wrong arch", signed(func(m *Manifest) { m.Arch = "arm64" }), p, ErrWrongArch, "built for arm64, this box is amd64"},
		{"same generation", signed(nil), Policy{CA: pub, Arch: "amd64", Installed: 2, Now: now}, ErrOldGen, "this box has generation 2"},
		{"older generation", signed(nil), Policy{CA: pub, Arch: "amd64", Installed: 5, Now: now}, ErrOldGen, "this box has generation 5"},
		{"rolled back before", signed(nil), Policy{CA: pub, Arch: "amd64", RolledBack: []uint64{2}, Now: now}, ErrRolledBack, "publish a newer generation"},
		{"expired", signed(nil), Policy{CA: pub, Arch: "amd64", Now: time.Unix(1798761601, 0)}, ErrExpired, "2027-01-01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.m, tc.p)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Check = %v; want %v containing %q", err, tc.kind, tc.msg)
			}
			if !strings.Contains(err.Error(), "generation 2 (v1.2.0)") {
				t.Errorf("message does not name the update: %v", err)
			}
		})
	}
}

func TestCheckFiles(t *testing.T) {
	m := goldenUnsigned(t)
	files := goldenFiles()
	if err := CheckFiles(m, files); err != nil {
		t.Fatal(err)
	}
	bad := goldenFiles()
	bad[FileInitramfs] = []byte("initrd.img content!")
	if err := CheckFiles(m, bad); !errors.Is(err, ErrHash) || !strings.Contains(err.Error(), "initrd.img: sha256 differs") {
		t.Fatalf("hash mismatch: %v", err)
	}
	bad[FileInitramfs] = []byte("short")
	if err := CheckFiles(m, bad); !errors.Is(err, ErrHash) || !strings.Contains(err.Error(), "initrd.img is 5 bytes, the manifest says 19") {
		t.Fatalf("size mismatch: %v", err)
	}
	for _, c := range []string{"quiet\nlinux /evil", "a meshnode.slot=a", "meshnode.token=x", "tab\there"} {
		if err := CheckCmdline(c); !errors.Is(err, ErrCmdline) {
			t.Errorf("CheckCmdline(%q) = %v", c, err)
		}
	}
	if err := CheckCmdline("console=ttyS0,115200 panic=10 meshnode.dhcp=false\n"); err != nil {
		t.Error(err)
	}
}

func FuzzParseManifest(f *testing.F) {
	good, _ := hex.DecodeString(goldenManifest)
	f.Add(good)
	f.Add(good[:40])
	f.Add(goldenUnsigned(f).Marshal())
	f.Add([]byte{1})
	f.Add([]byte{})
	_, pub := testCA(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if m != nil || err.Error() == "" {
				t.Fatalf("rejection returned %v, %q", m, err)
			}
			return
		}
		// The encoding is canonical: what decodes re-encodes to itself.
		if enc := m.Marshal(); !bytes.Equal(enc, data) {
			t.Fatalf("accepted %x but it re-encodes to %x", data, enc)
		}
		// Only the seed verifies: any other accepted input that verifies
		// would be a forgery.
		if m.Verify(pub) == nil && !bytes.Equal(data, good) {
			t.Fatalf("mutated manifest verifies: %x", data)
		}
	})
}
