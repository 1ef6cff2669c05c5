package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/scripts/meshlab"
)

// TestRevoke is the story of a stolen box: a four-node mesh keeps an R3
// stream; the admin revokes a node that holds a replica; within seconds
// every other node has cut it off (WireGuard, gossip, NATS), its identity
// is refused even from a trusted box, the stream is back to three current
// replicas, and the revoked daemon has stopped itself saying why. Then the
// remaining nodes all restart at once and the revocation holds.
func TestRevoke(t *testing.T) {
	lab := newLab(t)
	if keep := os.Getenv("MESHNODE_KEEP_LOGS"); keep != "" {
		t.Cleanup(func() { exec.Command("cp", "-r", lab.Dir, keep).Run() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	if err := lab.StartMesh(ctx, "e2e", []string{"alpha", "beta", "gamma", "delta"}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	alpha := lab.Nodes[0]
	byName := map[string]*meshlab.Node{}
	for _, n := range lab.Nodes {
		byName[n.Name] = n
	}

	// An R3 stream with messages: it lives on three of the four nodes.
	eventually(t, 60*time.Second, "create R3 stream", func() error {
		_, err := alpha.Meshnode("nats", "--state", alpha.State, "stream-add", "ORDERS", "orders.>", "3")
		return err
	})
	eventually(t, 60*time.Second, "publish 50 messages", func() error {
		_, err := alpha.Meshnode("nats", "--state", alpha.State, "js-pub", "orders.new", "o", "50")
		return err
	})
	eventually(t, 30*time.Second, "3 current replicas with 50 messages", func() error {
		return streamReplicated(alpha, "ORDERS", 50, 3)
	})
	placed, err := streamPeers(alpha, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	// The victim holds a replica (the leader's, when that is not the
	// admin doing the revoking); the spare holds none and must take over.
	var victim, spare *meshlab.Node
	for _, name := range placed {
		if name != alpha.Name && victim == nil {
			victim = byName[name]
		}
	}
	for _, n := range lab.Nodes {
		if !slices.Contains(placed, n.Name) {
			spare = n
		}
	}
	if victim == nil || spare == nil {
		t.Fatalf("stream placed on %v: want three of four nodes, one not alpha", placed)
	}
	var others []*meshlab.Node
	for _, n := range lab.Nodes {
		if n != victim {
			others = append(others, n)
		}
	}
	vst, err := victim.Status()
	if err != nil {
		t.Fatal(err)
	}
	victimKey := vst.WireGuardKey.String()
	t.Logf("stream ORDERS on %v; revoking %s, spare %s", placed, victim.Name, spare.Name)

	// The victim's identity holds a NATS connection to alpha's server,
	// from alpha's own box: a stolen credential used on a trusted host, so
	// that what refuses it is NATS, not the missing WireGuard peer.
	alphaURL := "tls://" + net.JoinHostPort(alpha.Addr, "4222")
	_, subLog, err := alpha.Spawn(lab.Bin, "nats", "--state", victim.State, "--server", alphaURL, "--timeout", "5m", "sub", "e2e.watch", "1000000")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the victim's client subscribed on alpha", func() error {
		return logSays(subLog, "subscribed e2e.watch")
	})

	// Only an admin revokes, and not itself; a name must be a member's.
	bystander := others[1] // others[0] is alpha
	for _, c := range []struct {
		on         *meshlab.Node
		args, want string
	}{
		{bystander, victim.Name, "does not hold the mesh CA"},
		{alpha, "alpha", "alpha is this node"},
		{alpha, "nobody", `no member named "nobody"`},
	} {
		if _, err := c.on.Meshnode("revoke", "--state", c.on.State, c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("revoke %s on %s: %v, want %q", c.args, c.on.Name, err, c.want)
		}
	}

	// revoke on the admin: it prints what it revoked.
	revoked := time.Now()
	out, err := alpha.Meshnode("revoke", "--state", alpha.State, victim.Name, "--reason", "stolen from the depot")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, victim.Name+" revoked") || !strings.Contains(out, "by alpha at") || !strings.Contains(out, "stolen from the depot") {
		t.Fatalf("revoke printed %q", out)
	}

	// Every other node cuts it off: no WireGuard peer (wg show), not a
	// member but a revoked one in status, no NATS route to it (Routez).
	type cut struct{ wg, gossip, route time.Duration }
	cuts := map[string]*cut{}
	for _, n := range others {
		cuts[n.Name] = &cut{}
	}
	// "Cut off everywhere within seconds": measured 0.3 s; 10 s leaves
	// room for a loaded CI machine.
	deadline := time.Now().Add(10 * time.Second)
	for {
		done := true
		for _, n := range others {
			c := cuts[n.Name]
			since := time.Since(revoked)
			if c.wg == 0 {
				if peers, err := n.NS.Run("wg", "show", n.Iface, "peers"); err == nil && !strings.Contains(peers, victimKey) {
					c.wg = since
				}
			}
			if st, err := n.Status(); err == nil {
				if c.gossip == 0 && !listsMember(st, victim.Name) && listsRevoked(st, victim.Name) {
					c.gossip = since
				}
				if c.route == 0 && !slices.Contains(st.NATS.RouteServers, victim.Name) {
					c.route = since
				}
			}
			done = done && c.wg != 0 && c.gossip != 0 && c.route != 0
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			for name, c := range cuts {
				t.Logf("%s: wireguard %s, gossip %s, route %s (0: not yet)", name, c.wg, c.gossip, c.route)
			}
			t.Fatalf("%s not cut off everywhere within 10 s", victim.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var wgMax, gossipMax, routeMax time.Duration
	for _, c := range cuts {
		wgMax, gossipMax, routeMax = max(wgMax, c.wg), max(gossipMax, c.gossip), max(routeMax, c.route)
	}
	t.Logf("figure: revoke → cut off on every node: WireGuard %s, gossip %s, NATS route %s (polled every ~100 ms plus a status call per node)",
		wgMax.Round(time.Millisecond), gossipMax.Round(time.Millisecond), routeMax.Round(time.Millisecond))

	// The victim's client was closed, and its identity is refused when it
	// comes back.
	eventually(t, 30*time.Second, "the victim's client disconnected", func() error {
		return logSays(subLog, "disconnected from "+alphaURL)
	})
	t.Logf("figure: revoke → the victim's NATS client on alpha disconnected: within %s", time.Since(revoked).Round(100*time.Millisecond))
	if _, err := alpha.Meshnode("nats", "--state", victim.State, "--server", alphaURL, "pub", "e2e.watch", "x"); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("revoked identity connecting afresh: %v, want an authorization violation", err)
	}

	// The revoked daemon learnt it (from the members' farewell), stopped,
	// and exited non-zero with the reason; status there says why.
	if err := victim.Wait(60 * time.Second); err == nil {
		t.Fatalf("the revoked daemon exited 0")
	}
	t.Logf("figure: revoke → the revoked daemon exited: %s", time.Since(revoked).Round(100*time.Millisecond))
	for _, want := range []string{"this node has been revoked from the mesh: stopping", "by alpha at", "stolen from the depot"} {
		if err := logSays(victim.Log, want); err != nil {
			t.Fatalf("revoked daemon's log: %v", err)
		}
	}
	if _, err := victim.Meshnode("status", "--state", victim.State); err == nil || !strings.Contains(err.Error(), "revoked by alpha at") || !strings.Contains(err.Error(), "stolen from the depot") {
		t.Fatalf("status on the revoked box: %v", err)
	}

	// The stream is back to three current replicas, on the remaining
	// members, with every message; and it takes new ones.
	var replaced time.Duration
	eventually(t, 2*time.Minute, "ORDERS re-placed on 3 current replicas", func() error {
		peers, err := streamPeers(alpha, "ORDERS")
		if err != nil {
			return err
		}
		if slices.Contains(peers, victim.Name) || !slices.Contains(peers, spare.Name) {
			return fmt.Errorf("ORDERS on %v", peers)
		}
		if err := streamReplicated(alpha, "ORDERS", 50, 3); err != nil {
			return err
		}
		replaced = time.Since(revoked)
		return nil
	})
	t.Logf("figure: replica loss (revoke) → 3 current replicas again (on %s): %s", spare.Name, replaced.Round(100*time.Millisecond))
	eventually(t, 60*time.Second, "publish 10 more", func() error {
		_, err := alpha.Meshnode("nats", "--state", alpha.State, "js-pub", "orders.new", "p", "10")
		return err
	})
	eventually(t, 30*time.Second, "60 messages on 3 current replicas", func() error {
		return streamReplicated(spare, "ORDERS", 60, 3)
	})

	// The admin rotated the gossip key after the revocation: every other
	// node fetched the new one and, once the old one retired, holds only
	// it. The victim's copy of the old key opens nothing there.
	eventually(t, 60*time.Second, "the revoked box's gossip key retired on every other node", func() error {
		for _, n := range others {
			st, err := n.Status()
			if err != nil {
				return err
			}
			if k := st.GossipKey; k.Epoch < 1 || k.Primary != k.Epoch || !slices.Equal(k.Installed, []uint32{k.Epoch}) {
				return fmt.Errorf("%s: gossip key %+v", n.Name, k)
			}
		}
		return nil
	})

	// up on the revoked state directory is a clear error.
	if err := victim.Up(); err != nil {
		t.Fatal(err)
	}
	if err := victim.Wait(30 * time.Second); err == nil {
		t.Fatal("up on a revoked state directory succeeded")
	}
	if err := logSays(victim.Log, "has been revoked by alpha"); err != nil {
		t.Fatalf("up on the revoked box: %v", err)
	}
	// Its identity cannot enroll again, even with a fresh token: a new
	// state directory holding only the old seed is refused as revoked.
	fresh := filepath.Join(lab.Dir, victim.Name+"-again")
	if err := os.MkdirAll(fresh, 0o700); err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(victim.State, "identity.seed"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fresh, "identity.seed"), seed, 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := alpha.Invite()
	if err != nil {
		t.Fatal(err)
	}
	rejoin, err := victim.Meshnode("join", alpha.EnrollAddr(), "--token", tok, "--name", victim.Name+"2",
		"--state", fresh, "--iface", victim.Iface, "--endpoint", victim.Endpoint(), "--enroll-addr", victim.EnrollAddr())
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("re-enrolling the revoked identity with a fresh token: %v\n%s", err, rejoin)
	}

	// Every remaining node restarts at once: the revocation holds, from
	// each node's own revocations file.
	var wg sync.WaitGroup
	for _, n := range others {
		wg.Add(1)
		go func() { defer wg.Done(); n.Stop(10 * time.Second) }()
	}
	wg.Wait()
	for _, n := range others {
		if err := n.Up(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range others {
		if err := n.WaitUp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 2*time.Minute, "the three remaining nodes complete again", func() error {
		for _, n := range others {
			// Complete counts members; the revoked one is not one.
			if ok, why := n.Complete(len(others)); !ok {
				return fmt.Errorf("%s", why)
			}
		}
		return nil
	})
	for _, n := range others {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if listsMember(st, victim.Name) || !listsRevoked(st, victim.Name) {
			t.Fatalf("%s after the restart: members %v, revoked %v", n.Name, st.Members, st.Revoked)
		}
		// The rotated key came back from gossip.keys: the old one stays retired.
		if k := st.GossipKey; k.Epoch < 1 || !slices.Equal(k.Installed, []uint32{k.Epoch}) {
			t.Fatalf("%s after the restart: gossip key %+v", n.Name, k)
		}
		if peers, err := n.NS.Run("wg", "show", n.Iface, "peers"); err != nil || strings.Contains(peers, victimKey) {
			t.Fatalf("%s after the restart: wg peers %q (%v) include the revoked key", n.Name, peers, err)
		}
	}
	eventually(t, 60*time.Second, "ORDERS on 3 current replicas after the restart", func() error {
		return streamReplicated(alpha, "ORDERS", 60, 3)
	})
}

func listsMember(st *api.Status, name string) bool {
	return slices.ContainsFunc(st.Members, func(m api.MemberStatus) bool { return m.Name == name })
}

func listsRevoked(st *api.Status, name string) bool {
	return slices.ContainsFunc(st.Revoked, func(r api.Revoked) bool { return r.Name == name })
}

// logSays reports whether the file at path contains want.
func logSays(path, want string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), want) {
		return fmt.Errorf("%s does not say %q; it ends:\n%s", filepath.Base(path), want, tail(string(b), 10))
	}
	return nil
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// streamPeers lists the servers holding stream: leader first, then the
// replicas.
func streamPeers(n *meshlab.Node, stream string) ([]string, error) {
	out, err := n.Meshnode("nats", "--state", n.State, "stream-info", stream)
	if err != nil {
		return nil, err
	}
	var info struct {
		Cluster struct {
			Leader   string `json:"leader"`
			Replicas []struct {
				Name string `json:"name"`
			} `json:"replicas"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return nil, fmt.Errorf("stream info: %w: %s", err, out)
	}
	if info.Cluster.Leader == "" {
		return nil, fmt.Errorf("%s has no leader", stream)
	}
	peers := []string{info.Cluster.Leader}
	for _, r := range info.Cluster.Replicas {
		peers = append(peers, r.Name)
	}
	return peers, nil
}
