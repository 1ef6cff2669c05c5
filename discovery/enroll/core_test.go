package enroll

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// TestEnrollGrantsCoreUpToMax: the admitting CA holder grants the core
// role while fewer than MaxCore identities hold an unexpired, unrevoked
// core ticket (itself included), never because an invite asks for it; a
// revoked core member frees its place; a retried join keeps its role.
func TestEnrollGrantsCoreUpToMax(t *testing.T) {
	f := newEnrollFixtureAs(t, true, 0, identity.RoleAdmin|identity.RoleCore, func(c *ServerConfig) {
		c.Mesh.MaxCore = 3
		c.Issued = identity.OpenIssued(filepath.Join(t.TempDir(), "issued.json"))
	})
	eps := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.20:51820")}
	join := func(name string, roles identity.Roles) (*identity.Identity, *identity.Ticket, string) {
		t.Helper()
		id := newIdentity(t)
		tok := f.token(time.Hour, roles, time.Now())
		res, err := Join(context.Background(), f.addr, tok, id, name, eps)
		if err != nil {
			t.Fatalf("join %s: %v", name, err)
		}
		tk, err := identity.ParseTicket(res.Enrollment.Ticket)
		if err != nil {
			t.Fatal(err)
		}
		return id, tk, tok
	}
	a, ta, tokA := join("a", 0)
	_, tb, _ := join("b", identity.RoleHub)
	_, tc, _ := join("c", identity.RoleCore|identity.RoleHub) // full: admin, a, b
	for _, c := range []struct {
		t    *identity.Ticket
		want identity.Roles
	}{{ta, identity.RoleCore}, {tb, identity.RoleHub | identity.RoleCore}, {tc, identity.RoleHub}} {
		if c.t.Roles != c.want {
			t.Errorf("%s: roles %v, want %v", c.t.Name, c.t.Roles, c.want)
		}
	}
	// a lost its answer and asks again: still core, though the set is full.
	res, err := Join(context.Background(), f.addr, tokA, a, "a", eps)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := identity.ParseTicket(res.Enrollment.Ticket); again == nil || !again.Roles.Has(identity.RoleCore) {
		t.Errorf("a retried join lost the core role: %+v", again)
	}
	// Revoking a frees its place.
	r, err := f.tm.ca.Revoke(a.Public(), "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.revs.Add(r); err != nil {
		t.Fatal(err)
	}
	if _, td, _ := join("d", 0); !td.Roles.Has(identity.RoleCore) {
		t.Errorf("d after a's revocation: roles %v, want core", td.Roles)
	}
	if _, te, _ := join("e", 0); te.Roles.Has(identity.RoleCore) {
		t.Errorf("e: roles %v, want no core (admin, b, d hold it)", te.Roles)
	}
}

// TestEnrollNoCoreInOldMesh: a mesh made before core members (the CA
// holder's ticket and every member's carry no core bit) never grants the
// role, whatever MaxCore says: it stays all core, the full mesh it was.
func TestEnrollNoCoreInOldMesh(t *testing.T) {
	f := newEnrollFixtureAs(t, true, 0, identity.RoleAdmin, func(c *ServerConfig) { c.Mesh.MaxCore = 5 })
	tok := f.token(time.Hour, identity.RoleCore, time.Now())
	res, err := Join(context.Background(), f.addr, tok, newIdentity(t), "newbie",
		[]netip.AddrPort{netip.MustParseAddrPort("198.51.100.20:51820")})
	if err != nil {
		t.Fatal(err)
	}
	if tk, _ := identity.ParseTicket(res.Enrollment.Ticket); tk == nil || tk.Roles != 0 {
		t.Errorf("newcomer of an old mesh got roles %v, want none", tk.Roles)
	}
}
