// Package identitytest is the shared fixture for tests that need a mesh
// CA and enrolled members: one minter instead of one per package. It is
// test-only: no product package imports it.
package identitytest

import (
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// RouteSecret is every fixture member's route secret (and so, derived
// from it, their gossip key).
const RouteSecret = "0123456789abcdef0123456789abcdef"

// Mesh is a mesh CA for tests.
type Mesh struct {
	CA  *identity.CA
	Now time.Time // issue time of every member
}

// NewMesh makes a fresh CA for a mesh called name.
func NewMesh(t testing.TB, name string) *Mesh {
	t.Helper()
	now := time.Now()
	ca, err := identity.NewCA(name, now)
	if err != nil {
		t.Fatal(err)
	}
	return &Mesh{CA: ca, Now: now}
}

// NewIdentity is a fresh identity.
func NewIdentity(t testing.TB) *identity.Identity {
	t.Helper()
	seed, err := identity.NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	return identity.FromSeed(seed)
}

// Member enrolls a fresh identity as name with roles: ticket and node
// certificate as the CA issues them, parsed back as a node would load
// them.
func (m *Mesh) Member(t testing.TB, name string, roles identity.Roles) *identity.Member {
	t.Helper()
	return m.MemberFor(t, NewIdentity(t), name, roles)
}

// MemberFor is Member for a given identity.
func (m *Mesh) MemberFor(t testing.TB, id *identity.Identity, name string, roles identity.Roles) *identity.Member {
	t.Helper()
	e, err := m.CA.Enroll(name, id.Public(), id.WireGuardPublic(), roles, m.Now)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := identity.ParseTicket(e.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := identity.ParseNodeCert(e.NodeCertPEM, m.CA.Trust, m.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &identity.Member{ID: id, Trust: m.CA.Trust, Ticket: tk, Cert: nc, RouteSecret: RouteSecret}
}
