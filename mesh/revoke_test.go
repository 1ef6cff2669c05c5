package mesh

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
)

func newSeed(t *testing.T) identity.Seed {
	t.Helper()
	seed, err := identity.NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	return seed
}

func newSeedID(t *testing.T) *identity.Identity { return identity.FromSeed(newSeed(t)) }

// TestRevokeOffline revokes on an admin's state directory with no daemon:
// names come from the persisted member table, the record names member and
// issuer, a second revoke signs nothing, and the admin cannot revoke itself.
func TestRevokeOffline(t *testing.T) {
	now := time.Now()
	dir := identity.StateDir(t.TempDir())
	admin, err := dir.InitMesh("acme", "alpha", 0, defaults.NodeCertValidity, now)
	if err != nil {
		t.Fatal(err)
	}
	betaSeed := newSeed(t)
	beta := identity.FromSeed(betaSeed)
	tk, err := admin.CA.IssueTicket("beta", beta.Public(), beta.WireGuardPublic(), 0, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d, err := discovery.New(discovery.Config{Member: admin})
	if err != nil {
		t.Fatal(err)
	}
	d.Admit(tk, nil)
	if err := discovery.WriteMembers(dir.MembersPath(), d.Members()); err != nil {
		t.Fatal(err)
	}

	if _, err := RevokeOffline(dir, "gamma", "", now); err == nil || !strings.Contains(err.Error(), `no member named "gamma" (members: beta)`) {
		t.Fatalf("unknown name: %v", err)
	}
	if _, err := RevokeOffline(dir, "alpha", "", now); err == nil || !strings.Contains(err.Error(), "this node") {
		t.Fatalf("self by name: %v", err)
	}
	if _, err := RevokeOffline(dir, admin.ID.Public().String(), "", now); err == nil || !strings.Contains(err.Error(), "this node") {
		t.Fatalf("self by key: %v", err)
	}

	got, err := RevokeOffline(dir, "beta", "stolen", now)
	if err != nil {
		t.Fatal(err)
	}
	want := identity.OverlayAddr(admin.Trust.Prefix(), beta.Public())
	if got.Name != "beta" || got.Node != beta.Public() || got.Addr != want || got.Issuer != "alpha" || got.Reason != "stolen" || got.Already {
		t.Fatalf("revoke beta: %+v", got)
	}
	revs, err := identity.LoadRevocations(dir.RevocationsPath(), admin.Trust)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := revs.Get(beta.Public())
	if !ok || r.Name != "beta" || r.Issuer != "alpha" {
		t.Fatalf("revocations file: %+v %v", r, ok)
	}
	// Again, by key: already revoked, nothing new signed.
	again, err := RevokeOffline(dir, beta.Public().String(), "other reason", now.Add(time.Hour))
	if err != nil || !again.Already || again.Reason != "stolen" || !again.Time.Equal(got.Time) {
		t.Fatalf("second revoke: %+v %v", again, err)
	}
	// A key that was never a member can be revoked; the record names no
	// member.
	stranger := newSeedID(t)
	s, err := RevokeOffline(dir, stranger.Public().String(), "", now)
	if err != nil || s.Name != "" || s.Node != stranger.Public() {
		t.Fatalf("revoke by key: %+v %v", s, err)
	}
	if r, err := RevokedSelf(dir); err != nil || r != nil {
		t.Fatalf("RevokedSelf on the admin: %v %v", r, err)
	}

	// beta's own state directory: no CA, so no revoke; once the record
	// reaches its revocations file, RevokedSelf says who revoked it, and
	// New refuses to run it with the same words.
	bdir := identity.StateDir(t.TempDir())
	e, err := admin.CA.Enroll("beta", beta.Public(), beta.WireGuardPublic(), 0, now)
	if err != nil {
		t.Fatal(err)
	}
	e.RouteSecret = admin.RouteSecret
	if _, err := bdir.SaveEnrollment(beta, e, now); err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteFileAtomic(bdir.SeedPath(), identity.MarshalSeedFile(betaSeed), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := RevokeOffline(bdir, "alpha", "", now); err == nil || !strings.Contains(err.Error(), "does not hold the mesh CA") {
		t.Fatalf("revoke on a member: %v", err)
	}
	if err := revs.Save(bdir.RevocationsPath()); err != nil {
		t.Fatal(err)
	}
	r, err = RevokedSelf(bdir)
	if err != nil || r == nil || !strings.HasPrefix(r.Summary(), "revoked by alpha at ") || !strings.HasSuffix(r.Summary(), ": stolen") {
		t.Fatalf("RevokedSelf on beta: %v %v", r, err)
	}
	_, err = New(Config{StateDir: bdir}, nil)
	var re *RevokedError
	if !errors.As(err, &re) || !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "this node (beta) has been revoked by alpha at ") {
		t.Fatalf("New on a revoked state directory: %v", err)
	}
}

func TestPlanCutOff(t *testing.T) {
	tm := newTestMesh(t)
	self, _ := tm.member("self", discovery.StateAlive)
	a, _ := tm.member("a", discovery.StateAlive)
	b, _ := tm.member("b", discovery.StateAlive)
	gone := newSeedID(t).Public()
	s := Snapshot{
		Self:    Self{Name: "self", Node: self.Node, Addr: self.Addr, Prefix: tm.ca.Trust.Prefix(), RoutePort: 6222},
		Members: []discovery.Member{a, b},
		Revoked: revokedSet{b.Node: true, gone: true, self.Node: true},
		// Self is never cut off from itself, whatever the set says.
		RevokedNodes: []identity.NodePublic{b.Node, gone, self.Node},
	}
	p := NewPlan(s)
	want := []netip.Addr{b.Addr, identity.OverlayAddr(tm.ca.Trust.Prefix(), gone)}
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(p.CutOff, want) {
		t.Fatalf("CutOff = %v, want %v", p.CutOff, want)
	}
	if len(p.Peers) != 1 || len(p.Members) != 1 || p.Members[0].Name != "a" {
		t.Fatalf("revoked member still planned: %+v", p.Members)
	}
}
