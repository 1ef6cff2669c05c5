package discovery

import (
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// TestNeverSeenExpiry: a member admitted through the enrollment endpoint
// that gossip never sees alive is forgotten after NeverSeen, not
// Retention, while a member gossip has seen (and lost) is kept.
func TestNeverSeenExpiry(t *testing.T) {
	tm := newTestMesh(t)
	a, b, c := tm.node("a"), tm.node("b"), tm.node("c")
	cfg := a.config(t)
	cfg.NeverSeen = 3 * time.Minute
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.Admit(b.m.Ticket, []netip.AddrPort{netip.MustParseAddrPort("192.0.2.2:51820")})
	mdC, rej := d.checkSignatures(signedMeta(t, c.m.ID, c.m.Ticket))
	if rej != nil {
		t.Fatal(rej)
	}
	d.setMember(mdC, StateDead) // seen by gossip, then lost
	now := time.Now()

	d.sweep(now.Add(2 * time.Minute))
	if _, ok := stateOf(d, "b"); !ok {
		t.Fatal("admitted member forgotten before NeverSeen")
	}
	d.sweep(now.Add(4 * time.Minute))
	if _, ok := stateOf(d, "b"); ok {
		t.Fatal("admitted member never seen alive kept past NeverSeen")
	}
	if st, ok := stateOf(d, "c"); !ok || st != StateDead {
		t.Fatalf("member gossip saw was forgotten with the never-seen one (%v %v)", st, ok)
	}

	// Seen alive once, the member is no longer "never seen".
	d.Admit(b.m.Ticket, nil)
	mdB, _ := d.checkSignatures(signedMeta(t, b.m.ID, b.m.Ticket))
	d.setMember(mdB, StateAlive)
	d.setMember(mdB, StateDead)
	d.sweep(time.Now().Add(time.Hour))
	if _, ok := stateOf(d, "b"); !ok {
		t.Fatal("a member gossip saw was forgotten after NeverSeen")
	}
	// The default is minutes, not days.
	d2, err := New(b.config(t))
	if err != nil {
		t.Fatal(err)
	}
	if d2.cfg.NeverSeen <= 0 || d2.cfg.NeverSeen > time.Hour {
		t.Fatalf("default NeverSeen %s", d2.cfg.NeverSeen)
	}
}

// TestSetTicketAndExpiredStart: a node starts with its own expired ticket
// (to renew it) and SetTicket puts the renewed one into its meta.
func TestSetTicketAndExpiredStart(t *testing.T) {
	tm := newTestMesh(t)
	a := tm.node("a")
	old, err := tm.ca.IssueTicket("a", a.m.ID.Public(), a.m.ID.WireGuardPublic(), 0, time.Now().Add(-time.Hour), 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	a.m.Ticket = old
	d, err := New(a.config(t))
	if err != nil {
		t.Fatalf("New with an expired own ticket: %v", err)
	}
	if err := d.SetTicket(old); err == nil {
		t.Fatal("SetTicket accepted an expired ticket")
	}
	other := tm.node("b")
	if err := d.SetTicket(other.m.Ticket); err == nil {
		t.Fatal("SetTicket accepted another node's ticket")
	}
	fresh, err := tm.ca.IssueTicket("a", a.m.ID.Public(), a.m.ID.WireGuardPublic(), 0, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	seq := d.local.seq
	if err := d.SetTicket(fresh); err != nil {
		t.Fatal(err)
	}
	md, rej := d.checkSignatures((*delegate)(d).NodeMeta(512))
	if rej != nil || !md.ticket.Equal(fresh) || md.seq <= seq {
		t.Fatalf("meta after SetTicket: %v, ticket renewed %v, seq %d→%d", rej, md != nil && md.ticket.Equal(fresh), seq, md.seq)
	}
	if _, err := New(Config{Member: &identity.Member{ID: a.m.ID, Trust: a.m.Trust, Ticket: other.m.Ticket}}); err == nil {
		t.Fatal("New accepted another node's ticket as its own")
	}
}
