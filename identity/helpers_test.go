package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the fixed "now" of every deterministic test: tickets and
// revocations signed at t0 by a CA with a fixed key are byte-for-byte
// reproducible (Ed25519 signatures are deterministic).
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// seedOf returns a seed made of b repeated, or of the bytes given.
func seedOf(b ...byte) Seed {
	var s Seed
	if len(b) == 1 {
		copy(s[:], bytes.Repeat(b, SeedSize))
		return s
	}
	if len(b) != SeedSize {
		panic("seedOf: want 1 or 32 bytes")
	}
	copy(s[:], b)
	return s
}

// seedCounting is 0x01, 0x02, …, 0x20.
func seedCounting() Seed {
	var s Seed
	for i := range s {
		s[i] = byte(i + 1)
	}
	return s
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex literal %q: %v", s, err)
	}
	return b
}

// caFromKey builds a mesh CA around a fixed key, with a fixed serial and
// validity, so that everything it signs at a fixed time is deterministic.
// It goes through ParseTrust like NewCA does, so it is a valid meshnode CA.
func caFromKey(t testing.TB, mesh string, keySeed Seed, now time.Time) *CA {
	t.Helper()
	key := ed25519.NewKeyFromSeed(keySeed[:])
	pub := key.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "meshnode CA " + mesh, Organization: []string{mesh}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatalf("create fixed CA: %v", err)
	}
	tr, err := ParseTrust(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	if err != nil {
		t.Fatalf("fixed CA does not parse as a trust: %v", err)
	}
	return &CA{Trust: tr, key: key}
}

// The fixed CA and the fresh CAs below are built once per test binary:
// CA creation is cheap, but the fuzz targets and benchmarks call these in
// loops.
var (
	fixedCAOnce sync.Once
	fixedCAVal  *CA
)

// fixedCA is the golden-vector CA: mesh "acme", key seed 32×0xca, at t0.
func fixedCA(t testing.TB) *CA {
	t.Helper()
	fixedCAOnce.Do(func() { fixedCAVal = caFromKey(t, "acme", seedOf(0xca), t0) })
	return fixedCAVal
}

// newCA makes a fresh random CA, failing the test on error.
func newCA(t testing.TB, mesh string) *CA {
	t.Helper()
	ca, err := NewCA(mesh, t0)
	if err != nil {
		t.Fatalf("NewCA(%q): %v", mesh, err)
	}
	return ca
}

// newID makes a fresh random identity.
func newID(t testing.TB) *Identity {
	t.Helper()
	s, err := NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	return FromSeed(s)
}

// issue issues a ticket for id at t0 valid for TicketValidity.
func issue(t testing.TB, ca *CA, name string, id *Identity, roles Roles) *Ticket {
	t.Helper()
	tk, err := ca.IssueTicket(name, id.Public(), id.WireGuardPublic(), roles, t0, TicketValidity)
	if err != nil {
		t.Fatalf("IssueTicket(%q): %v", name, err)
	}
	return tk
}

// wantErr fails unless err is non-nil and its text contains every want.
func wantErr(t testing.TB, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not contain %q", err, w)
		}
	}
}

// dirEntries lists the names in dir, sorted.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// snapshot reads every regular file in dir with its mode, to show that an
// operation that must refuse changed nothing.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range dirEntries(t, dir) {
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			out[name] = fi.Mode().String()
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = fi.Mode().String() + " " + fi.ModTime().String() + " " + string(b)
	}
	return out
}

// fileMode returns the permission bits of path.
func fileMode(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
