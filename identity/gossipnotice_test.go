package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// goldenGossipKeyNotice is the notice the golden CA signs at t0 for epoch
// 3 with the key 32×0x42, used 10 s and retiring older keys 2 min later.
const goldenGossipKeyNotice = "01" + // version
	"04" + "61636d65" + // mesh "acme"
	"00000003" + // epoch 3
	"da1b1e68d8eeed3d" + // key id = SHA-256("meshnode gossip key id v1" || key)[:8]
	"0000000069b57a30" + // use at t0 + 10 s
	"0000000069b57a9e" + // retire at t0 + 2 min
	"b4b7e4b5abbe6fd9" + // CA key id
	"54bbf2cabc127ebb6104a6f07f54df8de2669587c08efbc0db9be617399b001eb86be51616b5734a8e0036cb2ffead5ebea969a8d29ab1f4f296305a16f88c0b" // signature

func goldenNoticeKey() [GossipKeySize]byte {
	var k [GossipKeySize]byte
	for i := range k {
		k[i] = 0x42
	}
	return k
}

func goldenNotice(t testing.TB) *GossipKeyNotice {
	t.Helper()
	n, err := fixedCA(t).SignGossipKeyNotice(3, goldenNoticeKey(), t0.Add(10*time.Second), t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGoldenGossipKeyNotice(t *testing.T) {
	ca := fixedCA(t)
	n := goldenNotice(t)
	got := n.Marshal()
	if hex.EncodeToString(got) != goldenGossipKeyNotice {
		t.Fatalf("gossip key notice encoding changed:\n got %x\nwant %s", got, goldenGossipKeyNotice)
	}
	want := mustHex(t, goldenGossipKeyNotice)
	body, sig := want[:len(want)-ed25519.SignatureSize], want[len(want)-ed25519.SignatureSize:]
	if !ed25519.Verify(ed25519.PublicKey(mustHex(t, goldenCAPublic)), append([]byte("meshnode gossip key notice v1"), body...), sig) {
		t.Error("golden notice signature is not Ed25519(CA, domain || body)")
	}
	id := GossipKeyID(goldenNoticeKey())
	if !bytes.Contains(body, id[:]) {
		t.Error("golden notice does not carry the key id")
	}
	if len(want) > MaxGossipKeyNoticeSize {
		t.Errorf("notice %d bytes > MaxGossipKeyNoticeSize %d", len(want), MaxGossipKeyNoticeSize)
	}
	p, err := ParseGossipKeyNotice(want)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(ca.Trust); err != nil {
		t.Fatal(err)
	}
	if p.Epoch != 3 || p.Mesh != "acme" || !p.UseAt.Equal(t0.Add(10*time.Second)) || !p.RetireAt.Equal(t0.Add(2*time.Minute)) || p.KeyID != id {
		t.Fatalf("parsed %+v", p)
	}
	if !bytes.Equal(p.Marshal(), want) {
		t.Fatal("re-encoding differs")
	}
}

func TestGossipKeyNoticeRefused(t *testing.T) {
	ca := fixedCA(t)
	good := goldenNotice(t).Marshal()
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"bad signature", flip(len(good) - 1), "bad CA signature"},
		{"changed epoch", flip(1 + 1 + 4 + 3), "bad CA signature"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"trailing", append(bytes.Clone(good), 0), "trailing"},
		{"version", append([]byte{2}, good[1:]...), "unknown version"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, err := ParseGossipKeyNotice(c.b)
			if err == nil {
				err = n.Verify(ca.Trust)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	other := newCA(t, "acme")
	if err := goldenNotice(t).Verify(other.Trust); err == nil {
		t.Fatal("another CA's trust accepts the notice")
	}
	if _, err := ca.SignGossipKeyNotice(0, goldenNoticeKey(), t0, t0); err == nil {
		t.Fatal("epoch 0 notice signed")
	}
	if _, err := ca.SignGossipKeyNotice(1, goldenNoticeKey(), t0.Add(time.Minute), t0); err == nil {
		t.Fatal("retire before use signed")
	}
}

// ringMember is a member of the fixed CA's mesh (for its trust and base key).
func ringMember(t testing.TB) *Member {
	ca := fixedCA(t)
	return &Member{Trust: ca.Trust, RouteSecret: "route-secret-for-golden"}
}

func key(b byte) [GossipKeySize]byte {
	var k [GossipKeySize]byte
	k[0] = b
	return k
}

func TestGossipKeyringCheckAndAdd(t *testing.T) {
	ca := fixedCA(t)
	r := NewGossipKeyring(ringMember(t))
	sign := func(epoch uint32, k [GossipKeySize]byte) *GossipKeyNotice {
		n, err := ca.SignGossipKeyNotice(epoch, k, t0, t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n2 := sign(2, key(2))
	if err := r.Add(n2, key(3)); !errors.Is(err, ErrGossipKeyMismatch) {
		t.Fatalf("a key that is not the notice's: %v", err)
	}
	if err := r.Add(n2, key(2)); err != nil {
		t.Fatal(err)
	}
	if r.Epoch() != 2 {
		t.Fatalf("epoch %d", r.Epoch())
	}
	if err := r.Check(sign(1, key(1))); !errors.Is(err, ErrGossipKeyOld) {
		t.Fatalf("older epoch: %v", err)
	}
	if err := r.Check(n2); !errors.Is(err, ErrGossipKeyOld) {
		t.Fatalf("same notice again: %v", err)
	}
	forged := *sign(3, key(3))
	forged.Signature[0] ^= 1
	if err := r.Check(&forged); err == nil || errors.Is(err, ErrGossipKeyOld) {
		t.Fatalf("bad signature: %v", err)
	}
	other, err := newCA(t, "acme").SignGossipKeyNotice(3, key(3), t0, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(other); err == nil {
		t.Fatal("another CA's notice accepted")
	}
	// Two notices for one epoch: the one that sorts first wins, whichever
	// came first.
	a, b := sign(3, key(30)), sign(3, key(31))
	if bytes.Compare(a.Marshal(), b.Marshal()) > 0 {
		a, b = b, a
	}
	ka, kb := key(30), key(31)
	if a.KeyID != GossipKeyID(ka) {
		ka, kb = kb, ka
	}
	if err := r.Add(b, kb); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(a, ka); err != nil {
		t.Fatalf("the winning notice of a tie: %v", err)
	}
	if err := r.Check(b); !errors.Is(err, ErrGossipKeyOld) {
		t.Fatalf("the losing notice of a tie: %v", err)
	}
	if e, _ := r.Newest(); e.Key != ka || len(r.Entries()) != 2 {
		t.Fatalf("tie kept %x, %d entries", e.Key[:1], len(r.Entries()))
	}
}

func TestGossipKeyringSchedule(t *testing.T) {
	ca := fixedCA(t)
	m := ringMember(t)
	base := m.GossipKey()
	entry := func(epoch uint32, use, retire time.Duration) GossipKeyEntry {
		n, err := ca.SignGossipKeyNotice(epoch, key(byte(epoch)), t0.Add(use), t0.Add(retire))
		if err != nil {
			t.Fatal(err)
		}
		return GossipKeyEntry{Notice: n, Key: key(byte(epoch))}
	}
	e1 := entry(1, 10*time.Second, 2*time.Minute)
	e2 := entry(2, 30*time.Second, 3*time.Minute)
	for _, c := range []struct {
		name    string
		entries []GossipKeyEntry
		at      time.Duration
		primary uint32
		epochs  []uint32
		next    time.Duration // 0: none
	}{
		{"never rotated", nil, 0, 0, []uint32{0}, 0},
		{"new key installed, old still seals", []GossipKeyEntry{e1}, 0, 0, []uint32{0, 1}, 10 * time.Second},
		{"new key seals, old still decrypts", []GossipKeyEntry{e1}, 10 * time.Second, 1, []uint32{1, 0}, 2 * time.Minute},
		{"old key retired", []GossipKeyEntry{e1}, 2 * time.Minute, 1, []uint32{1}, 0},
		{"second rotation before the first retired", []GossipKeyEntry{e1, e2}, 20 * time.Second, 1, []uint32{1, 2, 0}, 30 * time.Second},
		{"second key seals, epoch 0 retired by the first", []GossipKeyEntry{e1, e2}, 2 * time.Minute, 2, []uint32{2, 1}, 3 * time.Minute},
		{"all but the newest retired", []GossipKeyEntry{e1, e2}, time.Hour, 2, []uint32{2}, 0},
		{"a member that missed epoch 1", []GossipKeyEntry{e2}, time.Minute, 2, []uint32{2, 0}, 3 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewGossipKeyring(m)
			r.entries = c.entries
			s := r.Schedule(t0.Add(c.at))
			if s.PrimaryEpoch != c.primary || !slices.Equal(s.Epochs, c.epochs) {
				t.Fatalf("primary %d epochs %v, want %d %v", s.PrimaryEpoch, s.Epochs, c.primary, c.epochs)
			}
			want := map[uint32][GossipKeySize]byte{0: base, 1: key(1), 2: key(2)}
			if s.Primary != want[s.PrimaryEpoch] || s.Installed[0] != s.Primary {
				t.Fatal("primary key is not its epoch's, or not first")
			}
			for i, e := range s.Epochs {
				if s.Installed[i] != want[e] {
					t.Fatalf("installed[%d] is not epoch %d's key", i, e)
				}
			}
			if (c.next == 0) != s.Next.IsZero() || (c.next != 0 && !s.Next.Equal(t0.Add(c.next).Truncate(time.Second))) {
				t.Fatalf("next %v, want t0+%v", s.Next, c.next)
			}
		})
	}
}

func TestGossipKeyringPrune(t *testing.T) {
	ca := fixedCA(t)
	r := NewGossipKeyring(ringMember(t))
	for epoch := uint32(1); epoch <= 3; epoch++ {
		n, _ := ca.SignGossipKeyNotice(epoch, key(byte(epoch)), t0, t0.Add(time.Duration(epoch)*time.Minute))
		if err := r.Add(n, key(byte(epoch))); err != nil {
			t.Fatal(err)
		}
	}
	if r.Prune(t0.Add(time.Minute)) {
		t.Fatal("pruned before any retire-at of a newer notice")
	}
	if !r.Prune(t0.Add(2*time.Minute)) || len(r.entries) != 2 || r.entries[0].Notice.Epoch != 2 {
		t.Fatalf("epoch 1 not pruned at epoch 2's retire-at: %d entries", len(r.entries))
	}
	if !r.Prune(t0.Add(time.Hour)) || len(r.entries) != 1 || r.Epoch() != 3 {
		t.Fatal("the newest must stay, alone")
	}
}

func TestGossipKeyringFile(t *testing.T) {
	ca := fixedCA(t)
	m := ringMember(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "gossip.keys")
	r, err := LoadGossipKeyring(path, m)
	if err != nil || r.Epoch() != 0 {
		t.Fatalf("missing file: epoch %v, %v", r, err)
	}
	for epoch := uint32(1); epoch <= 2; epoch++ {
		n, _ := ca.SignGossipKeyNotice(epoch, key(byte(epoch)), t0, t0.Add(time.Minute))
		if err := r.Add(n, key(byte(epoch))); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	back, err := LoadGossipKeyring(path, m)
	if err != nil {
		t.Fatal(err)
	}
	if back.Epoch() != 2 || len(back.Entries()) != 2 || back.Entries()[0].Key != key(1) || !back.Entries()[1].Notice.Equal(r.Entries()[1].Notice) {
		t.Fatal("keyring did not round-trip")
	}
	good, _ := os.ReadFile(path)
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"truncated", good[:len(good)-3]},
		{"bad magic", append([]byte("XNGK"), good[4:]...)},
		{"key changed", func() []byte { b := bytes.Clone(good); b[len(gossipKeyringMagic)+2] ^= 1; return b }()},
		{"signature changed", func() []byte { b := bytes.Clone(good); b[len(b)-1] ^= 1; return b }()},
		{"trailing", append(bytes.Clone(good), 0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(path, c.b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadGossipKeyring(path, m)
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("corrupt keyring: %v (want an error naming %s)", err, path)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, c.b) {
				t.Fatal("the corrupt file was changed")
			}
		})
	}
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadGossipKeyring(path, m); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("a keyring others can read: %v", err)
	}
}

func FuzzParseGossipKeyNotice(f *testing.F) {
	good := goldenNotice(f).Marshal()
	f.Add(good)
	f.Add(good[:20])
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseGossipKeyNotice(data)
		if err != nil {
			if n != nil {
				t.Fatal("rejected input returned a notice")
			}
			return
		}
		if !bytes.Equal(n.Marshal(), data) {
			t.Fatalf("accepted %x but it re-encodes to %x", data, n.Marshal())
		}
		if len(data) > MaxGossipKeyNoticeSize {
			t.Fatalf("accepted %d bytes > MaxGossipKeyNoticeSize", len(data))
		}
		if n.Verify(fixedCA(t).Trust) == nil && !bytes.Equal(data, good) {
			t.Fatalf("a mutated notice verifies: %x", data)
		}
	})
}

func FuzzParseGossipKeyring(f *testing.F) {
	ca := fixedCA(f)
	n1, _ := ca.SignGossipKeyNotice(1, key(1), t0, t0.Add(time.Minute))
	n2, _ := ca.SignGossipKeyNotice(2, key(2), t0, t0.Add(time.Minute))
	f.Add(MarshalGossipKeyring(nil))
	f.Add(MarshalGossipKeyring([]GossipKeyEntry{{n1, key(1)}, {n2, key(2)}}))
	f.Add([]byte(gossipKeyringMagic + "\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseGossipKeyring(data)
		if err != nil {
			if entries != nil {
				t.Fatal("rejected input returned entries")
			}
			return
		}
		if enc := MarshalGossipKeyring(entries); !bytes.Equal(enc, data) {
			t.Fatalf("accepted %x but it re-encodes to %x", data, enc)
		}
		for _, e := range entries {
			if GossipKeyID(e.Key) != e.Notice.KeyID {
				t.Fatal("accepted a key that does not match its notice")
			}
		}
	})
}
