package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/scripts/meshlab"
)

// TestGossipKeyOfflineAcrossRotation: two boxes are off while the admin
// revokes one of them and rotates the gossip key. The one still a member
// comes back although every member's gossip is sealed with a key it never
// saw (it fetches the key from an enrollment endpoint at start), and so
// does a newcomer that joins after the rotation; the
// revoked one is told by the endpoint it asks, with the CA-signed record,
// and stops saying who revoked it, when and why.
func TestGossipKeyOfflineAcrossRotation(t *testing.T) {
	lab := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if err := lab.StartMesh(ctx, "e2e", []string{"alpha", "beta", "gamma", "delta"}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	alpha, beta, away, victim := lab.Nodes[0], lab.Nodes[1], lab.Nodes[2], lab.Nodes[3]
	away.Stop(10 * time.Second)
	victim.Stop(10 * time.Second)

	if _, err := alpha.Meshnode("revoke", "--state", alpha.State, victim.Name, "--reason", "left in a taxi"); err != nil {
		t.Fatal(err)
	}
	up := []*meshlab.Node{alpha, beta}
	eventually(t, 60*time.Second, "the old gossip key retired on alpha and beta", func() error {
		for _, n := range up {
			st, err := n.Status()
			if err != nil {
				return err
			}
			if k := st.GossipKey; k.Epoch != 1 || k.Primary != 1 || !slices.Equal(k.Installed, []uint32{1}) {
				return fmt.Errorf("%s: gossip key %+v", n.Name, k)
			}
		}
		return nil
	})

	// The member that was away comes back on the new key.
	back := time.Now()
	if err := away.Up(); err != nil {
		t.Fatal(err)
	}
	if err := away.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, away.Name+" back in the mesh on the new gossip key", func() error {
		for _, n := range []*meshlab.Node{alpha, beta, away} {
			if ok, why := n.Complete(3); !ok {
				return fmt.Errorf("%s", why)
			}
		}
		st, err := away.Status()
		if err != nil {
			return err
		}
		if k := st.GossipKey; k.Epoch != 1 || k.Primary != 1 {
			return fmt.Errorf("%s: gossip key %+v", away.Name, k)
		}
		return nil
	})
	t.Logf("figure: a member off across a rotation → complete again after its start: %s", time.Since(back).Round(100*time.Millisecond))
	if err := logSays(away.Log, "gossip key fetched"); err != nil {
		t.Fatal(err)
	}

	// A newcomer joining after the rotation derives only epoch 0 from its
	// join answer; it fetches the current key when it starts.
	newcomer, err := lab.AddNode("epsilon")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := alpha.Invite()
	if err != nil {
		t.Fatal(err)
	}
	if err := newcomer.Join(alpha, tok); err != nil {
		t.Fatal(err)
	}
	if err := newcomer.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the newcomer in the mesh on the new gossip key", func() error {
		for _, n := range []*meshlab.Node{alpha, beta, away, newcomer} {
			if ok, why := n.Complete(4); !ok {
				return fmt.Errorf("%s", why)
			}
		}
		return nil
	})
	if err := logSays(newcomer.Log, "gossip key fetched"); err != nil {
		t.Fatal(err)
	}

	// The revoked box that was away is told why and stops.
	if err := victim.Up(); err != nil {
		t.Fatal(err)
	}
	if err := victim.Wait(60 * time.Second); err == nil {
		t.Fatal("the revoked box that was away exited 0")
	}
	for _, want := range []string{"refuses this node as revoked", "this node has been revoked from the mesh: stopping", "revoked by alpha at", "left in a taxi"} {
		if err := logSays(victim.Log, want); err != nil {
			t.Fatalf("revoked box's log: %v", err)
		}
	}
	if _, err := victim.Meshnode("status", "--state", victim.State); err == nil || !strings.Contains(err.Error(), "revoked by alpha at") {
		t.Fatalf("status on the revoked box: %v", err)
	}
}
