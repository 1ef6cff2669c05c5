package identity

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// stateDir is a state directory that does not exist yet.
func stateDir(t *testing.T) StateDir {
	return StateDir(filepath.Join(t.TempDir(), "state"))
}

func TestInitMeshLoadMember(t *testing.T) {
	d := stateDir(t)
	if d.HasIdentity() {
		t.Fatal("HasIdentity in an empty directory")
	}
	m, err := d.InitMesh("acme", "alpha", RoleHub, 0, t0)
	if err != nil {
		t.Fatalf("InitMesh: %v", err)
	}
	if !d.HasIdentity() {
		t.Errorf("HasIdentity false after InitMesh")
	}
	if m.CA == nil || !m.Ticket.Roles.Has(RoleAdmin|RoleHub|RoleCore) || m.Ticket.Name != "alpha" || m.Trust.Mesh != "acme" {
		t.Errorf("InitMesh member: CA %v roles %s name %q mesh %q", m.CA != nil, m.Ticket.Roles, m.Ticket.Name, m.Trust.Mesh)
	}

	l, err := d.LoadMember(t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("LoadMember: %v", err)
	}
	if l.ID.Public() != m.ID.Public() || l.ID.WireGuardPublic() != m.ID.WireGuardPublic() {
		t.Errorf("identity changed across InitMesh/LoadMember")
	}
	if l.Trust.Public != m.Trust.Public || !l.Ticket.Equal(m.Ticket) || !bytes.Equal(l.Cert.PEM, m.Cert.PEM) || l.RouteSecret != m.RouteSecret {
		t.Errorf("loaded member differs from the created one")
	}
	if l.CA == nil || l.CA.Public != m.CA.Public {
		t.Errorf("admin member did not load its CA")
	}
	if len(l.RouteSecret) < 32 {
		t.Errorf("route secret %d chars", len(l.RouteSecret))
	}
	if err := l.ID.CheckOwn(l.Ticket, l.Trust, t0); err != nil {
		t.Errorf("loaded ticket: %v", err)
	}

	// File modes: secrets 0600, public files 0644, directory 0700.
	for path, want := range map[string]os.FileMode{
		string(d):           0o700,
		d.SeedPath():        0o600,
		d.CAKeyPath():       0o600,
		d.RouteSecretPath(): 0o600,
		d.NKeyPath():        0o600,
		d.CACertPath():      0o644,
		d.NodeCertPath():    0o644,
		d.TicketPath():      0o644,
	} {
		if got := fileMode(t, path); got != want {
			t.Errorf("%s: mode %#o, want %#o", filepath.Base(path), got, want)
		}
	}
	// The .nk file is the node's NATS user seed.
	nk, _ := os.ReadFile(d.NKeyPath())
	kp, err := nkeys.FromSeed(bytes.TrimSpace(nk))
	if err != nil {
		t.Fatalf("nats-user.nk: %v", err)
	}
	if pub, _ := kp.PublicKey(); pub != l.ID.Public().NKey() {
		t.Errorf("nats-user.nk holds %s, want %s", pub, l.ID.Public().NKey())
	}
	for _, name := range dirEntries(t, string(d)) {
		if strings.Contains(name, ".tmp") {
			t.Errorf("temp file %s left behind", name)
		}
	}
}

func TestInitMeshRefusesSecondTime(t *testing.T) {
	d := stateDir(t)
	if _, err := d.InitMesh("acme", "alpha", 0, 0, t0); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, string(d))
	for _, args := range [][2]string{{"acme", "alpha"}, {"other", "beta"}} {
		_, err := d.InitMesh(args[0], args[1], 0, 0, t0.Add(time.Hour))
		wantErr(t, err, d.SeedPath(), "already exists")
		if after := snapshot(t, string(d)); !equalMaps(before, after) {
			t.Fatalf("a refused InitMesh changed the state directory")
		}
	}
}

func TestInitMeshBadNames(t *testing.T) {
	for _, tc := range []struct{ mesh, name, want string }{
		{"Acme", "alpha", "--mesh"},
		{"acme", "al.pha", "--name"},
		{"", "alpha", "--mesh"},
	} {
		d := stateDir(t)
		_, err := d.InitMesh(tc.mesh, tc.name, 0, 0, t0)
		wantErr(t, err, tc.want)
		if _, err := os.Stat(string(d)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("InitMesh(%q, %q) created the directory before validating", tc.mesh, tc.name)
		}
	}
}

// joiner is a fresh node with a seed and no enrollment.
func joiner(t *testing.T) (StateDir, *Identity) {
	t.Helper()
	d := stateDir(t)
	if err := d.Ensure(); err != nil {
		t.Fatal(err)
	}
	seed, err := CreateSeed(d.SeedPath())
	if err != nil {
		t.Fatal(err)
	}
	return d, FromSeed(seed)
}

func TestSaveEnrollment(t *testing.T) {
	admin := stateDir(t)
	am, err := admin.InitMesh("acme", "alpha", 0, 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	d, id := joiner(t)
	e, err := am.CA.Enroll("beta", id.Public(), id.WireGuardPublic(), RoleHub, t0)
	if err != nil {
		t.Fatal(err)
	}
	e.RouteSecret = am.RouteSecret
	m, err := d.SaveEnrollment(id, e, t0)
	if err != nil {
		t.Fatalf("SaveEnrollment: %v", err)
	}
	if m.CA != nil || m.Ticket.Name != "beta" || m.Ticket.Roles != RoleHub {
		t.Errorf("enrolled member: CA %v name %q roles %s", m.CA != nil, m.Ticket.Name, m.Ticket.Roles)
	}
	l, err := d.LoadMember(t0)
	if err != nil {
		t.Fatalf("LoadMember after SaveEnrollment: %v", err)
	}
	if l.CA != nil {
		t.Errorf("a member without the CA key loaded a CA")
	}
	if l.RouteSecret != am.RouteSecret || l.Trust.Public != am.Trust.Public {
		t.Errorf("enrolled member disagrees with the admin about the mesh")
	}

	// A second enrollment is refused and changes nothing.
	before := snapshot(t, string(d))
	e2, err := am.CA.Enroll("beta2", id.Public(), id.WireGuardPublic(), 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	e2.RouteSecret = am.RouteSecret
	_, err = d.SaveEnrollment(id, e2, t0)
	wantErr(t, err, d.TicketPath(), "already enrolled")
	if after := snapshot(t, string(d)); !equalMaps(before, after) {
		t.Errorf("a refused SaveEnrollment changed the state directory")
	}
}

func TestSaveEnrollmentRejects(t *testing.T) {
	admin := stateDir(t)
	am, err := admin.InitMesh("acme", "alpha", 0, 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	other := newCA(t, "acme")
	d, id := joiner(t)
	stranger := newID(t)
	enroll := func(ca *CA, node *Identity) *Enrollment {
		e, err := ca.Enroll("beta", node.Public(), node.WireGuardPublic(), 0, t0)
		if err != nil {
			t.Fatal(err)
		}
		e.RouteSecret = am.RouteSecret
		return e
	}
	mixed := enroll(am.CA, id)
	mixed.NodeCertPEM = enroll(am.CA, stranger).NodeCertPEM
	foreignCert := enroll(am.CA, id)
	foreignCert.NodeCertPEM = enroll(other, id).NodeCertPEM
	otherCA := enroll(am.CA, id)
	otherCA.CACertPEM = other.PEM
	short := enroll(am.CA, id)
	short.RouteSecret = "tooshort"
	spaced := enroll(am.CA, id)
	spaced.RouteSecret = strings.Repeat("a", 40) + "\n"
	badTicket := enroll(am.CA, id)
	badTicket.Ticket = badTicket.Ticket[:10]

	before := snapshot(t, string(d))
	for _, tc := range []struct {
		name string
		e    *Enrollment
		want string
	}{
		{"ticket for another identity", enroll(am.CA, stranger), "names identity"},
		{"certificate for another identity", mixed, "another identity"},
		{"certificate from another CA", foreignCert, "certificate"},
		{"CA certificate of another mesh", otherCA, "another CA"},
		{"short route secret", short, "route secret"},
		{"route secret with a newline", spaced, "route secret"},
		{"truncated ticket", badTicket, "ticket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := d.SaveEnrollment(id, tc.e, t0)
			if m != nil {
				t.Errorf("SaveEnrollment returned a member with an error")
			}
			wantErr(t, err, "enrollment", tc.want)
			if after := snapshot(t, string(d)); !equalMaps(before, after) {
				t.Errorf("a rejected enrollment wrote files")
			}
		})
	}
	// Expired at the time of saving.
	_, err = d.SaveEnrollment(id, enroll(am.CA, id), t0.Add(2*TicketValidity))
	wantErr(t, err, "expired")
}

func TestLoadMemberErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(d StateDir) string // returns the path the error must name
		want   string
	}{
		{"no seed", func(d StateDir) string { os.Remove(d.SeedPath()); return d.SeedPath() }, "does not exist"},
		{"no CA certificate", func(d StateDir) string { os.Remove(d.CACertPath()); return d.CACertPath() }, "not enrolled"},
		{"no ticket", func(d StateDir) string { os.Remove(d.TicketPath()); return d.TicketPath() }, "not enrolled"},
		{"no node certificate", func(d StateDir) string { os.Remove(d.NodeCertPath()); return d.NodeCertPath() }, "not enrolled"},
		{"no route secret", func(d StateDir) string { os.Remove(d.RouteSecretPath()); return d.RouteSecretPath() }, "route secret"},
		{"readable route secret", func(d StateDir) string { os.Chmod(d.RouteSecretPath(), 0o644); return d.RouteSecretPath() }, "chmod 600"},
		{"readable seed", func(d StateDir) string { os.Chmod(d.SeedPath(), 0o640); return d.SeedPath() }, "chmod 600"},
		{"readable CA key", func(d StateDir) string { os.Chmod(d.CAKeyPath(), 0o644); return d.CAKeyPath() }, "chmod 600"},
		{"CA key of another CA", func(d StateDir) string {
			os.Remove(d.CAKeyPath())
			newCA(t, "acme").Save(d.CAKeyPath(), filepath.Join(string(d), "unused.crt"))
			return d.CAKeyPath()
		}, "does not match"},
		{"corrupt ticket", func(d StateDir) string {
			b, _ := os.ReadFile(d.TicketPath())
			b[len(b)-1] ^= 1
			os.WriteFile(d.TicketPath(), b, 0o644)
			return string(d)
		}, "bad CA signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := stateDir(t)
			if _, err := d.InitMesh("acme", "alpha", 0, 0, t0); err != nil {
				t.Fatal(err)
			}
			path := tc.mutate(d)
			m, err := d.LoadMember(t0)
			if m != nil {
				t.Errorf("LoadMember returned a member with an error")
			}
			wantErr(t, err, path, tc.want)
		})
	}

	// Without the CA key the node is a plain member, not an error.
	d := stateDir(t)
	if _, err := d.InitMesh("acme", "alpha", 0, 0, t0); err != nil {
		t.Fatal(err)
	}
	os.Remove(d.CAKeyPath())
	if m, err := d.LoadMember(t0); err != nil || m.CA != nil {
		t.Errorf("LoadMember without ca.key = %v, CA %v; want a member without CA", err, m != nil && m.CA != nil)
	}
}

func TestStateDirLayout(t *testing.T) {
	d := StateDir("/s")
	for got, want := range map[string]string{
		d.SeedPath():        "/s/identity.seed",
		d.CACertPath():      "/s/ca.crt",
		d.CAKeyPath():       "/s/ca.key",
		d.NodeCertPath():    "/s/node.crt",
		d.TicketPath():      "/s/ticket.bin",
		d.RouteSecretPath(): "/s/route.secret",
		d.RevocationsPath(): "/s/revocations.bin",
		d.InvitesPath():     "/s/invites.json",
		d.MembersPath():     "/s/members.json",
		d.ConfigPath():      "/s/meshnode.toml",
		d.NKeyPath():        "/s/nats-user.nk",
		d.APISocketPath():   "/s/api.sock",
		d.NATSDir():         "/s/nats",
	} {
		if got != want {
			t.Errorf("path %s, want %s", got, want)
		}
	}
	if DefaultStateDir != "/var/lib/meshnode" {
		t.Errorf("DefaultStateDir = %s", DefaultStateDir)
	}
}

func TestNewRouteSecret(t *testing.T) {
	a, err := NewRouteSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewRouteSecret()
	if len(a) != 64 || a == b || strings.TrimSpace(a) != a {
		t.Errorf("route secrets %q, %q", a, b)
	}
}
