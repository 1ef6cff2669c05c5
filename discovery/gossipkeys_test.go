package discovery

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// fetchFrom stands in for the node's key fetch (mesh over the enrollment
// endpoint): whenever n needs a key, it takes src's current one.
func fetchFrom(t *testing.T, n *testNode, src *Discovery) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d := n.d
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.GossipKeyNeeded():
			}
			if e, ok := src.CurrentGossipKey(); ok {
				if err := d.InstallGossipKey(e.Notice, e.Key); err != nil {
					t.Logf("%s: %v", n.name(), err)
				}
			}
		}
	}()
}

// onlyKey reports whether d's memberlist keyring holds exactly key.
func onlyKey(d *Discovery, key []byte) bool {
	d.keys.keyMu.Lock()
	defer d.keys.keyMu.Unlock()
	keys := d.keys.kr.GetKeys()
	return len(keys) == 1 && bytes.Equal(keys[0], key)
}

// TestGossipKeyRotationShutsOutTheRevokedKey: after a revocation the admin
// rotates the gossip key; every survivor fetches the new one, seals with
// it at use-at and drops the old one at retire-at. From then on the old
// key (which the revoked box holds) neither opens the survivors' gossip
// nor gets anything into it: a memberlist speaking it is no longer
// answered.
func TestGossipKeyRotationShutsOutTheRevokedKey(t *testing.T) {
	tm := newTestMesh(t)
	nodes, _ := startMesh(t, tm, 4)
	admin, survivors, revoked := nodes[0], nodes[:3], nodes[3]
	for _, n := range survivors[1:] {
		fetchFrom(t, n, admin.d)
	}
	oldKey := tm.gossipKey()

	// A box holding the old key, at an address no member blocks: the
	// revoked box's key, wherever it could reach the gossip port from.
	r := &rogue{name: "old-key", addr: assignAddr([32]byte{0x0d, 1}), key: oldKey}
	rml := r.start(t)
	target := survivors[1]
	ping := func() error {
		_, err := rml.Ping(target.name(), netAddr(target.gossipAddrPort(t)))
		return err
	}
	if err := ping(); err != nil {
		t.Fatalf("before the rotation the old key is answered (%v): the check below could not fail", err)
	}

	rev, err := tm.ca.Revoke(revoked.m.ID.Public(), "stolen", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.d.Revoke(rev); err != nil {
		t.Fatal(err)
	}
	notice, err := admin.d.RotateGossipKey(tm.ca, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if notice.Epoch != 1 {
		t.Fatalf("first rotation is epoch %d", notice.Epoch)
	}
	newKey, _ := admin.d.CurrentGossipKey()
	waitFor(t, 30*time.Second, "every survivor seals with the new key only", func() bool {
		for _, n := range survivors {
			st := n.d.GossipKeys()
			if st.Epoch != 1 || st.Primary != 1 || !slices.Equal(st.Installed, []uint32{1}) || !onlyKey(n.d, newKey.Key[:]) {
				return false
			}
		}
		return true
	})
	if time.Now().Before(notice.RetireAt) {
		t.Fatalf("old key removed before retire-at %s", notice.RetireAt)
	}
	if err := ping(); err == nil {
		t.Fatal("a survivor still answers a ping sealed with the revoked box's key")
	}
	if _, err := rml.Join([]string{target.gossipAddrPort(t).String()}); err == nil {
		t.Fatal("a memberlist with the revoked box's key joined a survivor")
	}
	waitFor(t, 20*time.Second, "survivors still see each other alive on the new key", func() bool {
		return allSee(survivors, names(survivors), StateAlive)
	})
	for _, n := range survivors {
		if k, err := identity.LoadGossipKeyring(n.config(t).GossipKeysPath, n.m); err != nil || k.Epoch() != 1 {
			t.Fatalf("%s: keyring file: %v", n.name(), err)
		}
	}
}

// TestGossipKeyOfflineMemberComesBack: a member that was off across a
// rotation can no longer speak with the mesh (its key is retired
// everywhere); once it has the current key (which the node fetches from a
// member's enrollment endpoint when it is alone) it rejoins.
func TestGossipKeyOfflineMemberComesBack(t *testing.T) {
	tm := newTestMesh(t)
	nodes, _ := startMesh(t, tm, 3)
	admin, away := nodes[0], nodes[2]
	fetchFrom(t, nodes[1], admin.d)
	if err := away.d.Shutdown(); err != nil {
		t.Fatal(err)
	}
	notice, err := admin.d.RotateGossipKey(tm.ca, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the old key retired on the members that were up", func() bool {
		return admin.d.GossipKeys().Primary == notice.Epoch && len(admin.d.GossipKeys().Installed) == 1 &&
			len(nodes[1].d.GossipKeys().Installed) == 1 && nodes[1].d.GossipKeys().Primary == notice.Epoch
	})

	back := &testNode{m: away.m, dir: away.dir, revs: away.revs}
	back.start(t)
	if st := back.d.GossipKeys(); st.Epoch != 0 {
		t.Fatalf("the member that was away holds epoch %d", st.Epoch)
	}
	// Its rejoin loop keeps trying; with a retired key nothing gets through.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if st, _ := stateOf(back.d, admin.name()); st == StateAlive {
			t.Fatal("a member with a retired key was let back into gossip")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e, _ := admin.d.CurrentGossipKey()
	if err := back.d.InstallGossipKey(e.Notice, e.Key); err != nil {
		t.Fatal(err)
	}
	all := []*testNode{admin, nodes[1], back}
	waitFor(t, 30*time.Second, "the member that was away is back on the new key", func() bool {
		return allSee(all, names(all), StateAlive) && back.d.GossipKeys().Primary == notice.Epoch
	})
}

// TestGossipKeyNoticeRefused: a notice with a bad signature, for an older
// epoch, or from another CA never becomes pending; a key that is not the
// notice's is not installed.
func TestGossipKeyNoticeRefused(t *testing.T) {
	tm := newTestMesh(t)
	n := tm.node("solo")
	d := n.start(t)
	now := time.Now()
	key, _ := identity.NewGossipKey()
	good, err := tm.ca.SignGossipKeyNotice(2, key, now, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.InstallGossipKey(good, [32]byte{1}); err == nil {
		t.Fatal("installed a key whose id does not match the notice")
	}
	if err := d.InstallGossipKey(good, key); err != nil {
		t.Fatal(err)
	}
	forged := *good
	forged.Epoch = 3
	older, _ := tm.ca.SignGossipKeyNotice(1, key, now, now.Add(time.Minute))
	other, _ := newTestMesh(t).ca.SignGossipKeyNotice(5, key, now, now.Add(time.Minute))
	for name, bad := range map[string]*identity.GossipKeyNotice{"bad signature": &forged, "older epoch": older, "same epoch again": good, "another CA": other} {
		d.takeNotice(bad)
		if p, ok := d.PendingGossipKey(); ok {
			t.Fatalf("%s: notice for epoch %d became pending", name, p.Epoch)
		}
		select {
		case <-d.GossipKeyNeeded():
			t.Fatalf("%s: a key fetch was asked for", name)
		default:
		}
	}
	newer, _ := tm.ca.SignGossipKeyNotice(3, key, now, now.Add(time.Minute))
	d.takeNotice(newer)
	if p, ok := d.PendingGossipKey(); !ok || p.Epoch != 3 {
		t.Fatal("a good newer notice is not pending")
	}
	select {
	case <-d.GossipKeyNeeded():
	default:
		t.Fatal("a good newer notice asks for no fetch")
	}
}

func netAddr(ap netip.AddrPort) net.Addr { return net.UDPAddrFromAddrPort(ap) }

// FuzzMergeRemoteState feeds push/pull states (the keyed form and the
// forms inside it) to a member: no panic, and a keyed state hands on a
// notice only when it parses.
func FuzzMergeRemoteState(f *testing.F) {
	tm := newTestMesh(f)
	n := tm.node("fuzz")
	d, err := New(n.config(f))
	if err != nil {
		f.Fatal(err)
	}
	key, _ := identity.NewGossipKey()
	notice, _ := tm.ca.SignGossipKeyNotice(1, key, time.Now(), time.Now().Add(time.Minute))
	rev, _ := tm.ca.Revoke(newIdentity(f).Public(), "fuzz", time.Now())
	inner := append([]byte{stateRevocList}, identity.MarshalRevocations([]*identity.Revocation{rev})...)
	if err := d.InstallGossipKey(notice, key); err != nil {
		f.Fatal(err)
	}
	keyed := d.keyedState(inner)
	f.Add(keyed)
	f.Add(inner)
	f.Add(keyed[:10])
	f.Add([]byte{stateKeyed, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		for len(d.keys.keyIn) > 0 {
			<-d.keys.keyIn
		}
		(*delegate)(d).MergeRemoteState(b, false)
		select {
		case got := <-d.keys.keyIn:
			if len(b) < 3 || b[0] != stateKeyed {
				t.Fatalf("a notice was taken from a state that is not keyed")
			}
			if _, err := identity.ParseGossipKeyNotice(got.Marshal()); err != nil {
				t.Fatalf("a notice that does not parse was handed on: %v", err)
			}
		default:
		}
	})
}
