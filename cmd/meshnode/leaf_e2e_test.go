package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/scripts/meshlab"
)

// TestCoreAndLeaves is issue 15 part 3 in real processes: a mesh made
// with `init --max-core 2` and four boxes has two core members (the CA
// and the first joiner) and two leaves. Status says which on each; a
// leaf has no route and one leaf connection; messages go leaf → leaf and
// leaf → core; an R2 stream the admin made takes acked publishes from one
// leaf and is read from the other; revoking a leaf closes its leaf
// connection within seconds.
func TestCoreAndLeaves(t *testing.T) {
	lab := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	names := []string{"core1", "core2", "leaf1", "leaf2"}
	for _, name := range names {
		if _, err := lab.AddNode(name); err != nil {
			t.Fatal(err)
		}
	}
	first := lab.Nodes[0]
	if err := first.Init("coreleaf", "--max-core", "2", "--bootstrap-expect", "2"); err != nil {
		t.Fatal(err)
	}
	if err := first.Up(); err != nil {
		t.Fatal(err)
	}
	if err := first.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	// One at a time, so that the core set is the first joiner.
	for _, n := range lab.Nodes[1:] {
		tok, err := first.Invite()
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Join(first, tok, "--bootstrap-expect", "2"); err != nil {
			t.Fatal(err)
		}
		if err := n.WaitUp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	started := time.Now()
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: last join → mesh complete (routes and leaf connections): %s", time.Since(started).Round(time.Millisecond))
	core1, core2, leaf1, leaf2 := lab.Nodes[0], lab.Nodes[1], lab.Nodes[2], lab.Nodes[3]

	// Status on each: two core members routed to each other, two leaves
	// with no route and one leaf connection to a core member.
	for _, c := range []struct {
		n    *meshlab.Node
		role string
	}{{core1, api.NATSRoleCore}, {core2, api.NATSRoleCore}, {leaf1, api.NATSRoleLeaf}, {leaf2, api.NATSRoleLeaf}} {
		st, err := c.n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.NATS.Role != c.role {
			t.Fatalf("%s: NATS role %q, want %q", c.n.Name, st.NATS.Role, c.role)
		}
		line := natsLine(t, c.n)
		if c.role == api.NATSRoleLeaf {
			if len(st.NATS.Routes) != 0 || st.NATS.Leaves != 1 || (st.NATS.LeafOf != "core1" && st.NATS.LeafOf != "core2") || st.NATS.LeafCore != 2 {
				t.Fatalf("%s: leaf with routes %v, %d leaf connections, connected to %q of %d", c.n.Name, st.NATS.Routes, st.NATS.Leaves, st.NATS.LeafOf, st.NATS.LeafCore)
			}
			if !strings.Contains(line, "leaf, connected to core member "+st.NATS.LeafOf) {
				t.Fatalf("%s status: %q", c.n.Name, line)
			}
			continue
		}
		if st.NATS.RoutesUp != 1 || st.NATS.RoutesExpected != 1 || !strings.Contains(line, ": core, routes 1/1") {
			t.Fatalf("%s: core member status %q (routes %d/%d)", c.n.Name, line, st.NATS.RoutesUp, st.NATS.RoutesExpected)
		}
	}
	if got := leafConns(t, core1, core2); got != 2 {
		t.Fatalf("the core holds %d leaf connections, want 2", got)
	}

	// Messages leaf → leaf and leaf → core.
	for _, p := range [][2]*meshlab.Node{{leaf1, leaf2}, {leaf2, leaf1}, {leaf1, core2}, {core1, leaf2}} {
		c, cancelSend := context.WithTimeout(ctx, 30*time.Second)
		want := "hello " + p[1].Name
		got, err := lab.SendAcross(c, p[0], p[1], "leaf.hello", want)
		cancelSend()
		if err != nil || got != want {
			t.Fatalf("NATS %s → %s: %q, %v", p[0].Name, p[1].Name, got, err)
		}
	}

	// An R2 stream made by the admin, written from one leaf with acks
	// and read from the other through the core's JetStream.
	eventually(t, 60*time.Second, "create the R2 stream", func() error {
		_, err := core1.Meshnode("nats", "--state", core1.State, "stream-add", "EDGE", "edge.>", "2")
		return err
	})
	eventually(t, 60*time.Second, "20 acked publishes from leaf1", func() error {
		_, err := leaf1.Meshnode("nats", "--state", leaf1.State, "js-pub", "edge.reading", "r", "20")
		return err
	})
	eventually(t, 30*time.Second, "the stream's 20 messages seen from leaf2", func() error {
		_, err := streamMsgs(leaf2, "EDGE", 20)
		return err
	})
	eventually(t, 30*time.Second, "two current replicas", func() error {
		return streamReplicated(core2, "EDGE", 20, 2)
	})
	// A leaf member cannot administer JetStream through its leaf.
	if _, err := leaf2.Meshnode("nats", "--state", leaf2.State, "stream-add", "EVIL", "evil.>", "1"); err == nil {
		t.Fatalf("a leaf member created a stream")
	}

	// nats-env on a leaf: the leaf first, then the core members only.
	out, err := leaf1.Meshnode("nats-env", "--state", leaf1.State)
	if err != nil {
		t.Fatal(err)
	}
	urls := strings.Split(strings.TrimPrefix(strings.SplitN(out, "\n", 2)[0], "export NATS_URL="), ",")
	if len(urls) != 3 || !strings.Contains(urls[0], overlayAddr(t, leaf1)) || strings.Contains(strings.Join(urls, ","), overlayAddr(t, leaf2)) {
		t.Fatalf("leaf1's NATS_URL = %v, want leaf1 first, then the two core members", urls)
	}

	// Revoking leaf2 closes its leaf connection within seconds.
	revoked := time.Now()
	if _, err := core1.Meshnode("revoke", "--state", core1.State, leaf2.Name, "--reason", "test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the core to hold one leaf connection", func() error {
		if got := leafConns(t, core1, core2); got != 1 {
			return fmt.Errorf("%d leaf connections", got)
		}
		return nil
	})
	t.Logf("figure: revoke → the revoked leaf's connection closed: %s", time.Since(revoked).Round(time.Millisecond))
	eventually(t, 30*time.Second, "leaf1 still reaching the stream", func() error {
		_, err := streamMsgs(leaf1, "EDGE", 20)
		return err
	})
}

// leafConns sums the leaf connections the core members hold.
func leafConns(t *testing.T, core ...*meshlab.Node) int {
	t.Helper()
	n := 0
	for _, c := range core {
		st, err := c.Status()
		if err != nil {
			t.Fatal(err)
		}
		n += st.NATS.Leaves
	}
	return n
}

// TestLaunchDefaultMaxCore: meshlab's Launch (what the benchmarks drive)
// with the default max_core: six boxes are five core members and one
// leaf, and the mesh completes.
func TestLaunchDefaultMaxCore(t *testing.T) {
	lab := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := lab.StartMesh(ctx, "six", []string{"n1", "n2", "n3", "n4", "n5", "n6"}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	roles := map[string]int{}
	for _, n := range lab.Nodes {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		roles[st.NATS.Role]++
		if st.NATS.Role == api.NATSRoleCore && st.NATS.RoutesUp != 4 {
			t.Errorf("%s: core member with %d routes, want 4", n.Name, st.NATS.RoutesUp)
		}
	}
	if roles[api.NATSRoleCore] != 5 || roles[api.NATSRoleLeaf] != 1 {
		t.Fatalf("roles %v, want 5 core and 1 leaf", roles)
	}
	// The leaf reaches a core member's subscriber.
	leaf := lab.Nodes[0]
	for _, n := range lab.Nodes {
		if st, _ := n.Status(); st != nil && st.NATS.Role == api.NATSRoleLeaf {
			leaf = n
		}
	}
	c, cancelSend := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSend()
	if got, err := lab.SendAcross(c, leaf, lab.Nodes[0], "six.hello", "hi"); err != nil || got != "hi" {
		t.Fatalf("NATS %s → %s: %q, %v", leaf.Name, lab.Nodes[0].Name, got, err)
	}
}
