package identity

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func revoke(t testing.TB, ca *CA, node NodePublic, reason string, at time.Time) *Revocation {
	t.Helper()
	r, err := ca.Revoke(node, reason, at)
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	return r
}

func TestRevocationRoundTrip(t *testing.T) {
	ca := fixedCA(t)
	for _, reason := range []string{"", "lost", "décommissionné ✓", strings.Repeat("r", MaxReasonLen)} {
		node := newID(t).Public()
		r := revoke(t, ca, node, reason, t0.Add(123456789)) // sub-second part dropped
		b := r.Marshal()
		p, err := ParseRevocation(b)
		if err != nil {
			t.Fatalf("ParseRevocation(reason %q): %v", reason, err)
		}
		if !bytes.Equal(p.Marshal(), b) || p.Node != node || p.Reason != reason || !p.Time.Equal(t0) {
			t.Errorf("reason %q: fields changed: %+v", reason, p)
		}
		if err := p.Verify(ca.Trust); err != nil {
			t.Errorf("reason %q: Verify: %v", reason, err)
		}
	}
	for _, bad := range []string{strings.Repeat("r", MaxReasonLen+1), "\xff\xfe"} {
		if _, err := ca.Revoke(newID(t).Public(), bad, t0); err == nil {
			t.Errorf("Revoke accepted reason %q", bad)
		}
	}
}

func TestParseRevocationErrors(t *testing.T) {
	ca := fixedCA(t)
	good := revoke(t, ca, FromSeed(seedOf(0)).Public(), "lost", t0).Marshal()
	reasonLenAt := 1 + 32 + 8 + 1 + 1 // v2, no member name, no issuer
	with := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	// A well-framed record whose reason is too long or not UTF-8.
	frame := func(reason []byte) []byte {
		b := bytes.Clone(good[:reasonLenAt])
		b = append(b, byte(len(reason)))
		b = append(b, reason...)
		return append(b, good[reasonLenAt+1+4:]...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"version 0", with(0, 0), "unknown version 0"},
		{"version 3", with(0, 3), "unknown version 3"},
		{"version 1 framing of a v2 record", with(0, 1), "trailing"},
		{"trailing byte", append(bytes.Clone(good), 0), "trailing"},
		{"truncated signature", good[:len(good)-1], "truncated"},
		{"reason_len longer", with(reasonLenAt, 5), "truncated"},
		{"reason_len shorter", with(reasonLenAt, 3), "trailing"},
		{"reason too long", frame(bytes.Repeat([]byte("x"), MaxReasonLen+1)), "reason"},
		{"reason not UTF-8", frame([]byte{0xff, 0xfe, 0xfd, 0xfc}), "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRevocation(tc.in)
			if r != nil {
				t.Errorf("ParseRevocation returned a record with an error")
			}
			wantErr(t, err, "revocation", tc.want)
		})
	}
	for n := range len(good) {
		if _, err := ParseRevocation(good[:n]); err == nil {
			t.Errorf("ParseRevocation accepted %d of %d bytes", n, len(good))
		}
	}
	// Every byte flip fails to parse or to verify.
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		if r, err := ParseRevocation(b); err == nil && r.Verify(ca.Trust) == nil {
			t.Errorf("byte %d flipped: still a valid revocation", i)
		}
	}
}

func TestRevocationSetAdd(t *testing.T) {
	ca := fixedCA(t)
	foreign := caFromKey(t, "acme", seedOf(0xcb), t0)
	s := NewRevocationSet(ca.Trust)
	a, b := newID(t).Public(), newID(t).Public()

	if s.IsRevoked(a) || s.Len() != 0 {
		t.Fatalf("new set is not empty")
	}
	r := revoke(t, ca, a, "lost", t0)
	if changed, err := s.Add(r); !changed || err != nil {
		t.Fatalf("Add = %v, %v", changed, err)
	}
	if !s.IsRevoked(a) || s.IsRevoked(b) || s.Len() != 1 {
		t.Errorf("IsRevoked(a)=%v IsRevoked(b)=%v Len=%d", s.IsRevoked(a), s.IsRevoked(b), s.Len())
	}
	if changed, err := s.Add(r); changed || err != nil {
		t.Errorf("second Add of the same record = %v, %v; want no change", changed, err)
	}

	// A record from another CA is rejected and changes nothing.
	changed, err := s.Add(revoke(t, foreign, b, "evil", t0))
	wantErr(t, err, "another CA")
	if changed || s.IsRevoked(b) {
		t.Errorf("foreign-CA revocation was added")
	}
	// So is one claiming our key id with another key's signature.
	forged := *revoke(t, foreign, b, "evil", t0)
	forged.CAKeyID = ca.Public.KeyID()
	_, err = s.Add(&forged)
	wantErr(t, err, "bad CA signature")
	// And one whose reason was altered after signing.
	altered := *revoke(t, ca, b, "lost", t0)
	altered.Reason = "found"
	_, err = s.Add(&altered)
	wantErr(t, err, "bad CA signature")
	if s.IsRevoked(b) || s.Len() != 1 {
		t.Errorf("an invalid record changed the set")
	}

	// An earlier record for a revoked key replaces the later one; a later
	// one does not.
	earlier := revoke(t, ca, a, "earlier", t0.Add(-time.Hour))
	if changed, _ := s.Add(earlier); !changed || s.List()[0].Reason != "earlier" {
		t.Errorf("earlier record did not replace the later one")
	}
	if changed, _ := s.Add(revoke(t, ca, a, "later", t0.Add(time.Hour))); changed || s.List()[0].Reason != "earlier" {
		t.Errorf("later record replaced the earlier one")
	}
}

func TestRevocationSetMerge(t *testing.T) {
	ca := fixedCA(t)
	keys := make([]NodePublic, 6)
	for i := range keys {
		keys[i] = FromSeed(seedOf(byte(0x10 + i))).Public()
	}
	var all []*Revocation
	for i, k := range keys {
		all = append(all, revoke(t, ca, k, "r", t0.Add(time.Duration(i)*time.Minute)))
	}
	// Same key, same time, different reason: a tie the set must break the
	// same way on every member.
	tie := revoke(t, ca, keys[0], "tie", t0)
	all = append(all, tie)

	x, y := NewRevocationSet(ca.Trust), NewRevocationSet(ca.Trust)
	added, err := x.Merge(all[:4])
	if err != nil || len(added) != 4 {
		t.Fatalf("Merge into empty: added %d, %v", len(added), err)
	}
	added, err = y.Merge(all[2:])
	if err != nil || len(added) != 5 { // keys 2..5, and keys[0] by the tie record
		t.Fatalf("Merge into empty: added %v, %v", added, err)
	}

	// Union both ways.
	addedX, err := x.Merge(y.List())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := y.Merge(x.List()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(MarshalRevocations(x.List()), MarshalRevocations(y.List())) {
		t.Errorf("after merging both ways the sets differ:\n%x\n%x", MarshalRevocations(x.List()), MarshalRevocations(y.List()))
	}
	if x.Len() != len(keys) {
		t.Errorf("union has %d records, want %d", x.Len(), len(keys))
	}
	for _, k := range keys {
		if !x.IsRevoked(k) {
			t.Errorf("%s missing from the union", k.ShortString())
		}
	}
	// Keys 4 and 5 were new to x; keys[0] changed only if y's tie record
	// wins over x's.
	slices.SortFunc(addedX, func(a, b NodePublic) int { return bytes.Compare(a[:], b[:]) })
	want := []NodePublic{keys[4], keys[5]}
	if revocationBefore(tie, all[0]) {
		want = append(want, keys[0])
	}
	slices.SortFunc(want, func(a, b NodePublic) int { return bytes.Compare(a[:], b[:]) })
	if !slices.Equal(addedX, want) {
		t.Errorf("Merge reported %d changed keys, want %d", len(addedX), len(want))
	}

	// Idempotent.
	before := MarshalRevocations(x.List())
	added, err = x.Merge(all)
	if err != nil || len(added) != 0 || !bytes.Equal(before, MarshalRevocations(x.List())) {
		t.Errorf("merging known records again: added %d, %v, changed=%v", len(added), err, !bytes.Equal(before, MarshalRevocations(x.List())))
	}

	// Order does not matter.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10 {
		shuffled := slices.Clone(all)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		z := NewRevocationSet(ca.Trust)
		if _, err := z.Merge(shuffled); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(MarshalRevocations(z.List()), before) {
			t.Fatalf("merge result depends on order")
		}
	}

	// Invalid records are skipped, reported, and do not stop the rest.
	foreign := caFromKey(t, "acme", seedOf(0xcb), t0)
	fresh := FromSeed(seedOf(0x42)).Public()
	added, err = x.Merge([]*Revocation{revoke(t, foreign, fresh, "x", t0), revoke(t, ca, fresh, "y", t0)})
	wantErr(t, err, "another CA")
	if len(added) != 1 || added[0] != fresh {
		t.Errorf("valid record after an invalid one: added %v", added)
	}
}

func TestRevocationsFile(t *testing.T) {
	ca := fixedCA(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "revocations.bin")

	// Missing file: empty set.
	s, err := LoadRevocations(path, ca.Trust)
	if err != nil || s.Len() != 0 {
		t.Fatalf("LoadRevocations(missing) = %v, %v; want an empty set", s, err)
	}
	for i := range 3 {
		if _, err := s.Add(revoke(t, ca, FromSeed(seedOf(byte(i+1))).Public(), "gone", t0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Save(path); err != nil {
		t.Fatalf("Save: %v", err)
	}
	back, err := LoadRevocations(path, ca.Trust)
	if err != nil {
		t.Fatalf("LoadRevocations: %v", err)
	}
	if !bytes.Equal(MarshalRevocations(back.List()), MarshalRevocations(s.List())) {
		t.Errorf("revocations changed across Save/Load")
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want only the file", names)
	}
	// An empty set round-trips too.
	empty := filepath.Join(dir, "empty.bin")
	if err := NewRevocationSet(ca.Trust).Save(empty); err != nil {
		t.Fatal(err)
	}
	if e, err := LoadRevocations(empty, ca.Trust); err != nil || e.Len() != 0 {
		t.Errorf("empty set round trip: %v", err)
	}

	good, _ := os.ReadFile(path)
	foreign := caFromKey(t, "acme", seedOf(0xcb), t0)
	withForeign := MarshalRevocations(append(s.List(), revoke(t, foreign, FromSeed(seedOf(9)).Public(), "x", t0)))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"signature byte flipped", flip(good, len(good)-1), "bad CA signature"},
		{"node byte flipped", flip(good, 5+4+2+5), "bad CA signature"},
		{"record from another CA", withForeign, "another CA"},
		{"truncated", good[:len(good)-3], "truncated"},
		{"trailing", append(bytes.Clone(good), 0), "trailing"},
		{"bad magic", flip(good, 0), "magic"},
		{"empty file", []byte{}, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "revocations.bin")
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := LoadRevocations(p, ca.Trust)
			if s != nil {
				t.Errorf("LoadRevocations returned a set with an error")
			}
			wantErr(t, err, p, tc.want)
		})
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestParseRevocationsErrors(t *testing.T) {
	ca := fixedCA(t)
	one := MarshalRevocations([]*Revocation{revoke(t, ca, FromSeed(seedOf(1)).Public(), "x", t0)})
	count := func(n uint32) []byte {
		b := bytes.Clone(one)
		binary.BigEndian.PutUint32(b[5:9], n)
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"no count", []byte("MNRV\x01"), "truncated"},
		{"version 2", append([]byte("MNRV\x02"), one[5:]...), "magic"},
		{"count 0 with a record", count(0), "trailing"},
		{"count 2 with one record", count(2), "record 1"},
		{"huge count", count(1 << 31), "does not fit"},
		{"record length past the end", append(bytes.Clone(one[:9]), 0xff, 0xff, 1), "record 0"},
		{"bad record", append(bytes.Clone(one[:9]), 0, 1, 2), "record 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseRevocations(tc.in)
			if l != nil {
				t.Errorf("ParseRevocations returned records with an error")
			}
			wantErr(t, err, "revocations", tc.want)
		})
	}
	if l, err := ParseRevocations(MarshalRevocations(nil)); err != nil || len(l) != 0 {
		t.Errorf("empty list: %v, %v", l, err)
	}
}

// TestRevocationSetConcurrent runs Add, Merge, IsRevoked and List at once
// (meaningful under -race).
func TestRevocationSetConcurrent(t *testing.T) {
	ca := fixedCA(t)
	s := NewRevocationSet(ca.Trust)
	var recs []*Revocation
	for i := range 16 {
		recs = append(recs, revoke(t, ca, FromSeed(seedOf(byte(i+1))).Public(), "c", t0))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	newly := 0
	for g := range 8 {
		wg.Go(func() {
			added, err := s.Merge(recs[g%4:])
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			newly += len(added)
			mu.Unlock()
			s.IsRevoked(recs[0].Node)
			s.List()
		})
	}
	wg.Wait()
	if s.Len() != len(recs) || newly != len(recs) {
		t.Errorf("Len %d, newly revoked reported %d times; want %d each", s.Len(), newly, len(recs))
	}
}

func TestRevokeMemberNames(t *testing.T) {
	ca := fixedCA(t)
	node := newID(t).Public()
	r, err := ca.RevokeMember(RevokeRequest{Node: node, Name: "delta", Issuer: "alpha", Reason: "stolen"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseRevocation(r.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "delta" || p.Issuer != "alpha" || p.Version != RevocationVersion || p.Verify(ca.Trust) != nil {
		t.Fatalf("round trip: %+v", p)
	}
	// Names are signed: changing one breaks the signature.
	p.Issuer = "gamma"
	if p.Verify(ca.Trust) == nil {
		t.Fatal("a changed issuer still verifies")
	}
	for _, req := range []RevokeRequest{
		{Node: node, Name: "Not A Label"},
		{Node: node, Issuer: strings.Repeat("x", 64)},
	} {
		if _, err := ca.RevokeMember(req, t0); err == nil {
			t.Errorf("RevokeMember(%+v) accepted a bad name", req)
		}
	}
	// A well-framed record whose name is not a DNS label is refused by
	// the parser too, so a name read from gossip is always printable.
	bad := bytes.Clone(r.Marshal())
	bad[1+32+8+1] = 'D' // "delta" → "Delta"
	if _, err := ParseRevocation(bad); err == nil || !strings.Contains(err.Error(), "member name") {
		t.Fatalf("ParseRevocation(upper-case name) = %v", err)
	}
	if got := (&Revocation{Time: t0}).Summary(); got != "revoked by the mesh CA at "+t0.UTC().Format(time.RFC3339) {
		t.Errorf("Summary without issuer or reason = %q", got)
	}
}
