package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestTicketSize(t *testing.T) {
	ca := newCA(t, strings.Repeat("m", 63))
	id := newID(t)
	long := issue(t, ca, strings.Repeat("n", 63), id, RoleAdmin|RoleHub)
	n := len(long.Marshal())
	if n > MaxTicketSize || n > 256 {
		t.Errorf("ticket with a 63-char name is %d bytes, want ≤ MaxTicketSize (%d) and ≤ 256", n, MaxTicketSize)
	}
	if n != MaxTicketSize {
		t.Errorf("the longest ticket is %d bytes but MaxTicketSize says %d", n, MaxTicketSize)
	}
	typical := issue(t, ca, "edge-07", id, 0)
	t.Logf("ticket size: %d bytes for a typical name (%q), %d bytes for a 63-char name (max %d)",
		len(typical.Marshal()), typical.Name, n, MaxTicketSize)
}

func TestTicketRoundTrip(t *testing.T) {
	ca := newCA(t, "acme")
	for _, tc := range []struct {
		name  string
		roles Roles
	}{
		{"a", 0},
		{"alpha", RoleAdmin},
		{"hub-1", RoleHub},
		{strings.Repeat("z", 63), RoleAdmin | RoleHub},
	} {
		id := newID(t)
		tk := issue(t, ca, tc.name, id, tc.roles)
		b := tk.Marshal()
		p, err := ParseTicket(b)
		if err != nil {
			t.Fatalf("ParseTicket(%q): %v", tc.name, err)
		}
		if !p.Equal(tk) || !bytes.Equal(p.Marshal(), b) {
			t.Errorf("%q: ticket does not survive Marshal/Parse", tc.name)
		}
		if p.Name != tc.name || p.Roles != tc.roles || p.Node != id.Public() || p.WireGuard != id.WireGuardPublic() {
			t.Errorf("%q: fields changed: %+v", tc.name, p)
		}
		if p.Addr != OverlayAddr(ca.Prefix(), id.Public()) {
			t.Errorf("%q: address %s is not the derived one", tc.name, p.Addr)
		}
		if err := p.Verify(ca.Trust, t0); err != nil {
			t.Errorf("%q: Verify: %v", tc.name, err)
		}
		if err := id.CheckOwn(p, ca.Trust, t0); err != nil {
			t.Errorf("%q: CheckOwn: %v", tc.name, err)
		}
	}
}

// TestTicketEveryByteFlip: changing any byte of a valid ticket makes it
// unparseable or unverifiable. Three masks per byte: the low bit, the high
// bit and every bit.
func TestTicketEveryByteFlip(t *testing.T) {
	ca := fixedCA(t)
	good := issue(t, ca, "alpha", FromSeed(seedCounting()), RoleHub).Marshal()
	for i := range good {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(good)
			b[i] ^= mask
			tk, err := ParseTicket(b)
			if err != nil {
				continue
			}
			if err := tk.Verify(ca.Trust, t0); err == nil {
				t.Errorf("byte %d ^ %#02x: the ticket still parses and verifies", i, mask)
			}
		}
	}
}

func TestParseTicketErrors(t *testing.T) {
	ca := fixedCA(t)
	good := issue(t, ca, "alpha", FromSeed(seedCounting()), RoleHub).Marshal()
	with := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	nameAt := 2                     // name starts after version and name_len
	rolesAt := 2 + 5 + 32 + 32 + 16 // after name, identity, wireguard, addr
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"version only", good[:1], "truncated"},
		{"trailing byte", append(bytes.Clone(good), 0), "1 trailing bytes"},
		{"trailing signature", append(bytes.Clone(good), good[len(good)-64:]...), "trailing"},
		{"version 0", with(0, 0), "unknown version 0"},
		{"version 2", with(0, 2), "unknown version 2"},
		{"version 255", with(0, 255), "unknown version 255"},
		{"name_len longer", with(1, 6), "truncated"},
		{"name_len shorter", with(1, 4), "trailing"},
		{"name_len 0", append([]byte{1, 0}, good[nameAt+5:]...), "name"},
		{"uppercase name", with(nameAt, 'A'), "name"},
		{"name with a dot", with(nameAt+2, '.'), "name"},
		{"name starting with '-'", with(nameAt, '-'), "name"},
		{"name with NUL", with(nameAt+4, 0), "name"},
		{"unknown role bit", with(rolesAt, 0x08), "unknown role"},
		{"all role bits", with(rolesAt, 0xff), "unknown role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk, err := ParseTicket(tc.in)
			if tk != nil {
				t.Errorf("ParseTicket returned a ticket with an error")
			}
			wantErr(t, err, "ticket", tc.want)
		})
	}
	// Every proper prefix is truncated (or, for very short ones, a version
	// error), never accepted.
	for n := range len(good) {
		if _, err := ParseTicket(good[:n]); err == nil {
			t.Errorf("ParseTicket accepted the first %d of %d bytes", n, len(good))
		}
	}
	// A 64-char name with a consistent length byte is a name error, not a
	// silent truncation.
	long := append([]byte{1, 64}, bytes.Repeat([]byte("a"), 64)...)
	long = append(long, good[nameAt+5:]...)
	_, err := ParseTicket(long)
	wantErr(t, err, "name")
}

// signedTicket is IssueTicket without its checks, for tickets a buggy or
// malicious CA might sign.
func signedTicket(ca *CA, tk Ticket) *Ticket {
	tk.CAKeyID = ca.Public.KeyID()
	copy(tk.Signature[:], ca.sign(tk.signedBytes()))
	return &tk
}

func TestTicketVerify(t *testing.T) {
	ca := fixedCA(t)
	id := FromSeed(seedCounting())
	good := issue(t, ca, "alpha", id, RoleAdmin) // NotBefore t0-1m, NotAfter t0+TicketValidity
	foreign := caFromKey(t, "acme", seedOf(0xcb), t0)
	otherMesh := caFromKey(t, "other", seedOf(0xcc), t0)

	// Signed by the right CA but with an address from another prefix.
	wrongAddr := *good
	wrongAddr.Addr = OverlayAddr(foreign.Prefix(), id.Public())
	badAddr := signedTicket(ca, wrongAddr)
	// Claims our CA's key id but is signed by another key.
	forged := *good
	copy(forged.Signature[:], ed25519.Sign(foreign.key, good.signedBytes()))

	for _, tc := range []struct {
		name  string
		tk    *Ticket
		trust *Trust
		now   time.Time
		want  string // "" = valid
	}{
		{"valid at issue", good, ca.Trust, t0, ""},
		{"valid just before expiry", good, ca.Trust, good.NotAfter, ""},
		{"expired within clock skew", good, ca.Trust, good.NotAfter.Add(ClockSkew), ""},
		{"expired beyond clock skew", good, ca.Trust, good.NotAfter.Add(ClockSkew + time.Second), "expired"},
		{"expired long ago", good, ca.Trust, good.NotAfter.Add(365 * 24 * time.Hour), "expired"},
		{"not yet valid within clock skew", good, ca.Trust, good.NotBefore.Add(-ClockSkew), ""},
		{"not yet valid beyond clock skew", good, ca.Trust, good.NotBefore.Add(-ClockSkew - time.Second), "not valid before"},
		{"foreign CA, same mesh name", good, foreign.Trust, t0, "another CA"},
		{"another mesh", good, otherMesh.Trust, t0, "another CA"},
		{"forged signature", &forged, ca.Trust, t0, "bad CA signature"},
		{"address mismatch", badAddr, ca.Trust, t0, "not the one derived"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.tk.Verify(tc.trust, tc.now)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			wantErr(t, err, "alpha", tc.want)
		})
	}
	if ClockSkew <= 0 || ClockSkew > 15*time.Minute {
		t.Errorf("ClockSkew %s: want a small positive allowance", ClockSkew)
	}
}

func TestCheckOwn(t *testing.T) {
	ca := fixedCA(t)
	me, other := FromSeed(seedCounting()), FromSeed(seedOf(0))
	mine := issue(t, ca, "alpha", me, 0)
	if err := me.CheckOwn(mine, ca.Trust, t0); err != nil {
		t.Fatalf("CheckOwn(own ticket): %v", err)
	}
	// Someone else's valid ticket.
	theirs := issue(t, ca, "beta", other, 0)
	wantErr(t, me.CheckOwn(theirs, ca.Trust, t0), "beta", "names identity")
	// Our identity, but a WireGuard key not derived from our seed.
	wrongWG, err := ca.IssueTicket("alpha", me.Public(), other.WireGuardPublic(), 0, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, me.CheckOwn(wrongWG, ca.Trust, t0), "WireGuard")
	// Verify's failures come first.
	wantErr(t, me.CheckOwn(mine, ca.Trust, t0.Add(2*TicketValidity)), "expired")
}

func TestIssueTicketRejects(t *testing.T) {
	ca := fixedCA(t)
	id := newID(t)
	for _, tc := range []struct {
		name     string
		roles    Roles
		validity time.Duration
		want     string
	}{
		{"", 0, time.Hour, "name"},
		{"Alpha", 0, time.Hour, "name"},
		{strings.Repeat("a", 64), 0, time.Hour, "name"},
		{"alpha", 0x80, time.Hour, "unknown roles"},
		{"alpha", 0, 0, "validity"},
		{"alpha", 0, -time.Hour, "validity"},
	} {
		tk, err := ca.IssueTicket(tc.name, id.Public(), id.WireGuardPublic(), tc.roles, t0, tc.validity)
		if tk != nil {
			t.Errorf("IssueTicket(%q, %#x) returned a ticket", tc.name, uint8(tc.roles))
		}
		wantErr(t, err, tc.want)
	}
}

// TestTicketTimesTruncated: tickets carry whole seconds, so an issued
// ticket equals its own parse (no sub-second state lost on the wire).
func TestTicketTimesTruncated(t *testing.T) {
	ca := fixedCA(t)
	tk, err := ca.IssueTicket("alpha", FromSeed(seedCounting()).Public(), FromSeed(seedCounting()).WireGuardPublic(), 0, t0.Add(987654321), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseTicket(tk.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !p.NotBefore.Equal(tk.NotBefore) || !p.NotAfter.Equal(tk.NotAfter) {
		t.Errorf("times changed on the wire: %s/%s → %s/%s", tk.NotBefore, tk.NotAfter, p.NotBefore, p.NotAfter)
	}
	if err := p.Verify(ca.Trust, t0); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestRoles(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Roles
		str  string
	}{
		{"", 0, "-"},
		{"-", 0, "-"},
		{"admin", RoleAdmin, "admin"},
		{"hub", RoleHub, "hub"},
		{"admin,hub", RoleAdmin | RoleHub, "admin,hub"},
		{"hub,admin", RoleAdmin | RoleHub, "admin,hub"},
		{"hub, admin", RoleAdmin | RoleHub, "admin,hub"},
		{"admin,admin", RoleAdmin, "admin"},
		{"core", RoleCore, "core"},
		{"core,admin", RoleAdmin | RoleCore, "admin,core"},
		{"admin,hub,core", RoleAdmin | RoleHub | RoleCore, "admin,hub,core"},
	} {
		r, err := ParseRoles(tc.in)
		if err != nil || r != tc.want || r.String() != tc.str {
			t.Errorf("ParseRoles(%q) = %v (%s), %v; want %v (%s)", tc.in, uint8(r), r, err, uint8(tc.want), tc.str)
		}
	}
	for _, bad := range []string{"root", "admin,", "Admin", "admin;hub", ",", "Core", "leaf"} {
		if _, err := ParseRoles(bad); err == nil {
			t.Errorf("ParseRoles(%q) accepted", bad)
		}
	}
	if !(RoleAdmin | RoleHub).Has(RoleHub) || RoleAdmin.Has(RoleAdmin|RoleHub) || !Roles(0).Has(0) {
		t.Errorf("Roles.Has wrong")
	}
}

// TestRolesText: roles travel as text in JSON (the local API), in the
// String form, and a bad name is refused rather than read as none.
func TestRolesText(t *testing.T) {
	type doc struct {
		R Roles `json:"roles"`
	}
	for r, want := range map[Roles]string{0: `{"roles":"-"}`, RoleHub: `{"roles":"hub"}`, RoleAdmin | RoleHub: `{"roles":"admin,hub"}`} {
		b, err := json.Marshal(doc{r})
		if err != nil || string(b) != want {
			t.Errorf("marshal %v: %s, %v; want %s", uint8(r), b, err, want)
		}
		var back doc
		if err := json.Unmarshal(b, &back); err != nil || back.R != r {
			t.Errorf("unmarshal %s: %v, %v; want %v", b, uint8(back.R), err, uint8(r))
		}
	}
	var d doc
	if err := json.Unmarshal([]byte(`{"roles":"root"}`), &d); err == nil {
		t.Error(`unmarshal "root" accepted`)
	}
}

func TestTicketAddrIsIPv6(t *testing.T) {
	tk := issue(t, fixedCA(t), "alpha", FromSeed(seedCounting()), 0)
	if !tk.Addr.Is6() || tk.Addr.Is4In6() || !netip.MustParsePrefix("fd00::/8").Contains(tk.Addr) {
		t.Errorf("ticket address %s is not a ULA IPv6 address", tk.Addr)
	}
}
