// Package identitytest is the shared fixture for tests that need a mesh
// CA and enrolled members: one minter instead of one per package. It is
// test-only: no product package imports it.
package identitytest

import (
	"fmt"
	"runtime"
	"sync"
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
	m, err := MakeMesh(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// MakeMesh is NewMesh for programs without a testing.TB (benchmarks
// under scripts/).
func MakeMesh(name string) (*Mesh, error) {
	now := time.Now()
	ca, err := identity.NewCA(name, now)
	if err != nil {
		return nil, err
	}
	return &Mesh{CA: ca, Now: now}, nil
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
	mb, err := m.Enroll(id, name, roles)
	if err != nil {
		t.Fatal(err)
	}
	return mb
}

// Enroll is MemberFor returning its error.
func (m *Mesh) Enroll(id *identity.Identity, name string, roles identity.Roles) (*identity.Member, error) {
	e, err := m.CA.Enroll(name, id.Public(), id.WireGuardPublic(), roles, m.Now)
	if err != nil {
		return nil, err
	}
	tk, err := identity.ParseTicket(e.Ticket)
	if err != nil {
		return nil, err
	}
	nc, err := identity.ParseNodeCert(e.NodeCertPEM, m.CA.Trust, m.Now)
	if err != nil {
		return nil, err
	}
	return &identity.Member{ID: id, Trust: m.CA.Trust, Ticket: tk, Cert: nc, RouteSecret: RouteSecret}, nil
}

// FleetName is the name of member i of a Fleet: prefix and a zero-padded
// number, so that names sort in member order.
func FleetName(prefix string, i int) string { return fmt.Sprintf("%s%04d", prefix, i) }

// Fleet enrolls n fresh members named FleetName(prefix, 0…n-1), without
// roles, in parallel on every CPU (a thousand take about a second: key
// generation, ticket and certificate signing, parsing back). Simulations
// of large meshes use it; every member is as real as Member's.
func (m *Mesh) Fleet(n int, prefix string) ([]*identity.Member, error) {
	out := make([]*identity.Member, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				seed, err := identity.NewSeed()
				if err != nil {
					errs[i] = err
					continue
				}
				out[i], errs[i] = m.Enroll(identity.FromSeed(seed), FleetName(prefix, i), 0)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("fleet member %s: %w", FleetName(prefix, i), err)
		}
	}
	return out, nil
}
