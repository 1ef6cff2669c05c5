package identity

import (
	"testing"
	"time"
)

func TestSmokeInitLoad(t *testing.T) {
	d := StateDir(t.TempDir())
	now := time.Now()
	m, err := d.InitMesh("acme", "alpha", RoleHub, now)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := d.LoadMember(now)
	if err != nil {
		t.Fatal(err)
	}
	if m2.CA == nil || m2.Ticket.Name != "alpha" || !m2.Ticket.Roles.Has(RoleAdmin|RoleHub) {
		t.Fatalf("bad member %+v", m2.Ticket)
	}
	t.Logf("ticket %d bytes addr %s prefix %s", len(m.Ticket.Marshal()), m.Ticket.Addr, m.Trust.Prefix())
	inv := OpenInvites(d.InvitesPath(), m.Trust)
	tok, err := inv.New(time.Hour, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(tok, len(tok))
	if _, err := inv.Redeem(tok, "b", now); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Redeem(tok, "b", now); err == nil {
		t.Fatal("reuse")
	} else {
		t.Log(err)
	}
	if _, err := d.InitMesh("acme", "alpha", 0, now); err == nil {
		t.Fatal("second init")
	} else {
		t.Log(err)
	}
}
