package discovery

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// goldenMeta builds a meta from fixed inputs: a seed of 0..31 and a ticket
// with fixed fields (its CA signature is a fixed pattern: the meta encoding
// does not care, admission does).
func goldenMeta(t testing.TB) (*identity.Identity, *meta) {
	var seed identity.Seed
	for i := range seed {
		seed[i] = byte(i)
	}
	id := identity.FromSeed(seed)
	tk := &identity.Ticket{
		Name:      "alpha",
		Node:      id.Public(),
		WireGuard: id.WireGuardPublic(),
		Addr:      netip.MustParseAddr("fd12:3456:789a:1:2:3:4:5"),
		Roles:     identity.RoleHub,
		NotBefore: time.Unix(1_800_000_000, 0).UTC(),
		NotAfter:  time.Unix(1_831_536_000, 0).UTC(),
		CAKeyID:   [8]byte{1, 2, 3, 4, 5, 6, 7, 8},
	}
	for i := range tk.Signature {
		tk.Signature[i] = byte(0xa0 + i%16)
	}
	m := &meta{
		ticket:         tk,
		seq:            42,
		natsClientPort: 4222,
		natsRoutePort:  6222,
		endpoints:      []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:51820"), netip.MustParseAddrPort("[2001:db8::1]:51820")},
		routes:         []netip.Prefix{netip.MustParsePrefix("fd12:3456:789a:ffff::1/128"), netip.MustParsePrefix("10.9.0.0/24")},
	}
	return id, m
}

const goldenMetaHex = "" +
	"0100b00105616c70686103a107bff3ce10be1d70dd18e74bc09967e4d6309ba5" +
	"0d5f1ddc8664125531b8c44537e3ea5f9462244a45a767258a2794b74415819f" +
	"fd162c05df8eb358936cfd123456789a0001000200030004000502000000006b" +
	"49d200000000006d2b05800102030405060708a0a1a2a3a4a5a6a7a8a9aaabac" +
	"adaeafa0a1a2a3a4a5a6a7a8a9aaabacadaeafa0a1a2a3a4a5a6a7a8a9aaabac" +
	"adaeafa0a1a2a3a4a5a6a7a8a9aaabacadaeaf000000000000002a107e184e02" +
	"00000000000000000000ffffc6336407ca6c20010db800000000000000000000" +
	"0001ca6c02fd123456789affff00000000000000018000000000000000000000" +
	"ffff0a09000078902da35aa17fcba6c7fa9a163f7d5c9aec6367426b21c269a0" +
	"4d2e6342270f3c56d3d3b9b91321abdecf5d548bcf68d860f9e60b8fdc83d3ec" +
	"4544452f634e03"

func TestMetaGolden(t *testing.T) {
	id, m := goldenMeta(t)
	b, err := m.sign(id)
	if err != nil {
		t.Fatal(err)
	}
	got := hex.EncodeToString(b)
	t.Logf("golden meta: %d bytes", len(b))
	if got != goldenMetaHex {
		t.Fatalf("meta encoding changed:\n got %s\nwant %s", got, goldenMetaHex)
	}
	back, err := parseMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if !back.verify() || back.seq != 42 || back.natsClientPort != 4222 || back.natsRoutePort != 6222 ||
		!slices.Equal(back.endpoints, m.endpoints) || !slices.Equal(back.routes, m.routes) || !back.ticket.Equal(m.ticket) || back.leaving {
		t.Fatalf("round trip lost something: %+v", back)
	}
}

// TestMetaWorstCaseFits fills every field to its bound: the longest name,
// every endpoint and route slot.
func TestMetaWorstCaseFits(t *testing.T) {
	id, m := goldenMeta(t)
	m.ticket.Name = string(bytes.Repeat([]byte("a"), 63))
	m.endpoints = nil
	for i := range MaxEndpoints {
		m.endpoints = append(m.endpoints, netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 15: byte(i)}), 65535))
	}
	m.routes = nil
	for i := range MaxRoutes {
		m.routes = append(m.routes, netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 15: byte(i)}), 128))
	}
	m.leaving = true
	b, err := m.sign(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != maxMetaBytes || len(b) > MaxMetaSize {
		t.Fatalf("worst-case meta is %d bytes, computed bound %d, limit %d", len(b), maxMetaBytes, MaxMetaSize)
	}
	t.Logf("worst-case meta: %d bytes of %d", len(b), MaxMetaSize)
	if _, err := parseMeta(b); err != nil {
		t.Fatal(err)
	}
	m.endpoints = append(m.endpoints, m.endpoints[0])
	if _, err := m.sign(id); err == nil {
		t.Fatal("too many endpoints signed")
	}
}

func TestMetaStrict(t *testing.T) {
	id, m := goldenMeta(t)
	good, err := m.sign(id)
	if err != nil {
		t.Fatal(err)
	}
	tlen := len(m.ticket.Marshal())
	epOff := 3 + tlen + 8 + 4 // n_endpoints
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for name, b := range map[string][]byte{
		"empty":           {},
		"version 2":       mut(func(b []byte) []byte { b[0] = 2; return b }),
		"unknown flag":    mut(func(b []byte) []byte { b[1] = 0x80; return b }),
		"truncated":       good[:len(good)-1],
		"trailing byte":   append(bytes.Clone(good), 0),
		"ticket too long": mut(func(b []byte) []byte { b[2]++; return b }),
		"too many eps":    mut(func(b []byte) []byte { b[epOff] = MaxEndpoints + 1; return b }),
		"zero port": mut(func(b []byte) []byte {
			b[epOff+1+16], b[epOff+1+17] = 0, 0
			return b
		}),
		"unmasked route": mut(func(b []byte) []byte {
			r := epOff + 1 + 2*endpointSize + 1 + routeSize // second route (10.9.0.0/24)
			b[r+15] = 1
			return b
		}),
		"route bits > 128": mut(func(b []byte) []byte {
			r := epOff + 1 + 2*endpointSize + 1
			b[r+16] = 129
			return b
		}),
	} {
		if _, err := parseMeta(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A flipped bit anywhere is either refused or fails the signature.
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x10
		if md, err := parseMeta(b); err == nil && md.verify() && md.ticket.Equal(m.ticket) {
			t.Fatalf("byte %d flipped and still verifies", i)
		}
	}
}

func FuzzParseMeta(f *testing.F) {
	id, m := goldenMeta(f)
	good, err := m.sign(id)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		md, err := parseMeta(b)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to the same bytes: one encoding per
		// meta, so signatures cannot be moved between variants.
		if out := md.marshal(); !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
		}
		if len(b) > MaxMetaSize {
			t.Fatalf("%d-byte meta accepted", len(b))
		}
	})
}
