package discovery

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

func (tm *testMesh) phone(t *testing.T, name string, hub *testNode) *identity.PhoneTicket {
	t.Helper()
	pub, sub := identity.DefaultPhoneSubjects(name)
	pt, err := tm.ca.IssuePhoneTicket(name, newIdentity(t), []identity.NodePublic{hub.m.ID.Public()}, pub, sub, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

func hasPhone(d *Discovery, pt *identity.PhoneTicket) bool {
	got, ok := d.PhoneSet().Get(pt.Node)
	return ok && got.Equal(pt)
}

// TestPhoneTicketsGossipPersistAndRevoke: a phone ticket added on one
// member reaches the others by broadcast, a member that joins later gets
// it by push/pull, every member persists it, and a revocation of the
// phone removes it everywhere and fires the change notification.
func TestPhoneTicketsGossipPersistAndRevoke(t *testing.T) {
	tm := newTestMesh(t)
	nodes := []*testNode{tm.node("p0"), tm.node("p1"), tm.node("p2")}
	phonesPath := func(n *testNode) string { return filepath.Join(n.dir, "phones.bin") }
	startNode := func(n *testNode) {
		cfg := n.config(t)
		cfg.PhonesPath = phonesPath(n)
		d, err := Start(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.d = d
		t.Cleanup(func() { d.Shutdown() })
		if n != nodes[0] {
			if _, err := d.Join([]netip.AddrPort{nodes[0].gossipAddrPort(t)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	startNode(nodes[0])
	startNode(nodes[1])
	waitFor(t, 20*time.Second, "2 members alive", func() bool { return allSee(nodes[:2], names(nodes[:2]), StateAlive) })

	pt := tm.phone(t, "pixel", nodes[0])
	if err := nodes[0].d.AddPhone(pt); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "p1 learns the phone by broadcast", func() bool { return hasPhone(nodes[1].d, pt) })

	// p2 joins after the broadcast is spent: only push/pull carries it.
	time.Sleep(2 * time.Second)
	startNode(nodes[2])
	waitFor(t, 20*time.Second, "p2 learns the phone by push/pull", func() bool { return hasPhone(nodes[2].d, pt) })

	// Persisted where it was learnt.
	waitFor(t, 5*time.Second, "p2 persisted the phone", func() bool {
		s, err := identity.LoadPhones(phonesPath(nodes[2]), tm.ca.Trust, nil, time.Now())
		return err == nil && len(s.List()) == 1
	})

	// Drain p1's pending notifications, then revoke the phone on p0.
	for len(nodes[1].d.Changes()) > 0 {
		<-nodes[1].d.Changes()
	}
	r, err := tm.ca.Revoke(pt.Node, "phone lost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].d.Revoke(r); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFor(t, 10*time.Second, n.name()+" drops the revoked phone", func() bool { return len(n.d.Phones()) == 0 })
	}
	select {
	case <-nodes[1].d.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("p1 saw no change notification for the phone's revocation")
	}
	// A stale ticket for the revoked phone is never taken back.
	nodes[2].d.offerPhones([]*identity.PhoneTicket{pt})
	time.Sleep(200 * time.Millisecond)
	if hasPhone(nodes[2].d, pt) {
		t.Error("a revoked phone's ticket was re-admitted from gossip")
	}
}

func TestPhoneStateRoundTrip(t *testing.T) {
	tm := newTestMesh(t)
	a, b := tm.node("a"), tm.node("b")
	da, err := New(a.config(t))
	if err != nil {
		t.Fatal(err)
	}
	db, err := New(b.config(t))
	if err != nil {
		t.Fatal(err)
	}
	// No phones: the old 'R' state, which members without phone support read.
	if st := da.localState(); st[0] != stateRevocList {
		t.Fatalf("state without phones starts %q", st[0])
	}
	pt := tm.phone(t, "pixel", a)
	if _, err := da.phones.Add(pt, time.Now()); err != nil {
		t.Fatal(err)
	}
	r, _ := tm.ca.Revoke(newIdentity(t).Public(), "x", time.Now())
	da.revs.Add(r)
	st := da.localState()
	if st[0] != statePhones {
		t.Fatalf("state with phones starts %q", st[0])
	}
	(*delegate)(db).MergeRemoteState(st, false)
	select {
	case list := <-db.phoneIn:
		db.mergePhones(list)
	case <-time.After(time.Second):
		t.Fatal("no phones offered")
	}
	select {
	case list := <-db.revIn:
		db.mergeRevocations(list)
	case <-time.After(time.Second):
		t.Fatal("no revocations offered")
	}
	if !hasPhone(db, pt) || !db.revs.IsRevoked(r.Node) {
		t.Error("state did not carry both parts")
	}
	// Truncated states are dropped whole.
	for i := 1; i < len(st); i += 37 {
		(*delegate)(db).MergeRemoteState(st[:i], false)
	}
}
