package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/scripts/meshlab"
	"github.com/meshnode/meshnode/scripts/netns"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
)

// TestNATPaths: a public hub and a public member, members behind two cone
// NATs and two symmetric NATs (netns.NAT: nftables masquerade, and
// masquerade random). Every pair pings and carries a NATS message;
// cone↔cone and cone↔public end up direct, symmetric↔symmetric relayed
// through the hub, with status saying why; a flushed NAT mapping heals;
// with the hub stopped, relayed pairs report none and the reason.
func TestNATPaths(t *testing.T) {
	lab := newLab(t)
	netnstest.RequireTool(t, "nft")
	netnstest.RequireTool(t, "conntrack")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	hub, err := lab.AddNode("hub1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.AddNode("pub"); err != nil {
		t.Fatal(err)
	}
	nats := map[string]*netns.NAT{}
	for _, c := range []struct {
		name      string
		symmetric bool
	}{{"cone1", false}, {"cone2", false}, {"sym1", true}, {"sym2", true}} {
		nat, err := lab.AddNAT(c.symmetric)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lab.AddNodeBehind(c.name, nat); err != nil {
			t.Fatal(err)
		}
		nats[c.name] = nat
	}
	node := func(name string) *meshlab.Node {
		for _, n := range lab.Nodes {
			if n.Name == name {
				return n
			}
		}
		t.Fatalf("no node %s", name)
		return nil
	}

	if err := hub.Init("nat", "--hub", "--bootstrap-expect", "3"); err != nil {
		t.Fatal(err)
	}
	if err := hub.Up(); err != nil {
		t.Fatal(err)
	}
	if err := hub.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	for _, n := range lab.Nodes[1:] {
		tok, err := hub.Invite()
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Join(hub, tok, "--bootstrap-expect", "3"); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range lab.Nodes[1:] {
		if err := n.WaitUp(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Time to the first packet over a relay: sym1 and sym2 started at once
	// with the others and find each other only through the hub.
	eventually(t, 2*time.Minute, "sym1 pings sym2", func() error {
		_, err := node("sym1").Meshnode("ping", "--state", node("sym1").State, "--count", "1", "--timeout", "1s", "sym2")
		return err
	})
	t.Logf("figure: start of the joins → first ping over the relay (sym1 → sym2): %s", time.Since(started).Round(time.Millisecond))

	type pair struct{ a, b, kind string }
	want := []pair{
		{"cone1", "cone2", "direct"},
		{"cone1", "pub", "direct"},
		{"cone2", "pub", "direct"},
		{"sym1", "pub", "direct"}, // the public end roams to the mapping
		{"cone1", "hub1", "direct"},
		{"sym1", "hub1", "direct"},
		{"sym1", "sym2", "relay hub1"},
	}
	waitPath := func(p pair, timeout time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		eventually(t, timeout, fmt.Sprintf("%s ↔ %s %s", p.a, p.b, p.kind), func() error {
			for _, e := range [][2]string{{p.a, p.b}, {p.b, p.a}} {
				got, err := pathOf(node(e[0]), e[1])
				if err != nil {
					return err
				}
				if !strings.HasPrefix(got, p.kind) {
					return fmt.Errorf("%s sees %s as %q", e[0], e[1], got)
				}
			}
			return nil
		})
		return time.Since(start)
	}
	for _, p := range want {
		waitPath(p, 2*time.Minute)
	}
	t.Logf("figure: start of the joins → every path settled: %s", time.Since(started).Round(time.Millisecond))
	relay, _ := pathOf(node("sym1"), "sym2")
	t.Logf("sym1 → sym2: %s", relay)
	if !strings.Contains(relay, "no direct handshake for 20 s") || !strings.Contains(relay, "NAT") {
		t.Errorf("relay reason: %q", relay)
	}
	if direct, _ := pathOf(node("cone1"), "cone2"); !strings.HasPrefix(direct, "direct "+nats["cone2"].WANIP+":") {
		t.Errorf("cone1 → cone2: %q, want direct to cone2's NAT", direct)
	}

	// Every pair pings (meshnode ping prints the path) and carries a NATS
	// message.
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	for _, from := range lab.Nodes {
		for _, to := range lab.Nodes {
			if from == to {
				continue
			}
			out, err := from.Meshnode("ping", "--state", from.State, "--count", "1", "--timeout", "3s", to.Name)
			if err != nil {
				t.Fatalf("ping %s → %s: %v\n%s", from.Name, to.Name, err, out)
			}
			if from.Name == "sym1" && to.Name == "sym2" {
				t.Logf("%s", strings.TrimSpace(out))
				if !strings.Contains(out, "pong from sym2 via relay hub1 in ") {
					t.Errorf("meshnode ping sym2: %q", out)
				}
			}
		}
	}
	for _, p := range [][2]string{{"sym1", "sym2"}, {"sym2", "sym1"}, {"cone1", "cone2"}, {"cone1", "sym1"}, {"pub", "sym2"}, {"cone2", "hub1"}} {
		msg := "hello " + p[1]
		got, err := lab.SendAcross(ctx, node(p[0]), node(p[1]), "nat."+p[0]+"."+p[1], msg)
		if err != nil {
			t.Fatal(err)
		}
		if got != msg {
			t.Fatalf("%s → %s: received %q", p[0], p[1], got)
		}
	}
	out, _ := node("sym1").Meshnode("status", "--state", node("sym1").State)
	t.Logf("sym1 status:\n%s", out)
	if !strings.Contains(out, "relayed through hub1: it decrypts and re-encrypts") {
		t.Errorf("status does not say the hub sees relayed traffic")
	}

	// Throughput, direct (cone1 → cone2) and relayed (sym1 → sym2 through
	// hub1), one run each: a figure, not a check.
	direct := iperf(t, node("cone1"), node("cone2"))
	relayed := iperf(t, node("sym1"), node("sym2"))
	t.Logf("figure: overlay throughput direct %.0f Mbit/s, relayed %.0f Mbit/s, relayed/direct %.2f", direct, relayed, relayed/direct)

	// A NAT forgets its mappings (conntrack flush): a symmetric one maps
	// to new ports. The relayed pair and the direct pair recover.
	before := observedOf(t, node("sym1"))
	for _, name := range []string{"sym1", "cone1"} {
		if err := nats[name].FlushConntrack(); err != nil {
			t.Fatal(err)
		}
	}
	flushed := time.Now()
	for _, p := range [][2]string{{"sym1", "sym2"}, {"cone1", "cone2"}} {
		eventually(t, 90*time.Second, p[0]+" reaches "+p[1]+" after the flush", func() error {
			_, err := node(p[0]).Meshnode("ping", "--state", node(p[0]).State, "--count", "1", "--timeout", "2s", p[1])
			return err
		})
	}
	t.Logf("figure: conntrack flush → relayed and direct pairs answer again: %s", time.Since(flushed).Round(time.Millisecond))
	waitPath(pair{"cone1", "cone2", "direct"}, 2*time.Minute)
	eventually(t, 30*time.Second, "sym1 advertises its new mapping", func() error {
		if now := observedOf(t, node("sym1")); now == before {
			return fmt.Errorf("still %s", now)
		}
		return nil
	})

	// The hub stops: relayed pairs say none and why; direct ones stay.
	hub.Stop(5 * time.Second)
	eventually(t, 60*time.Second, "sym1 reports the relay's loss", func() error {
		got, err := pathOf(node("sym1"), "sym2")
		if err != nil {
			return err
		}
		if got != "none (hub1 unreachable)" {
			return fmt.Errorf("sym1 → sym2: %q", got)
		}
		return nil
	})
	if got, _ := pathOf(node("cone1"), "cone2"); !strings.HasPrefix(got, "direct") {
		t.Errorf("hub down: cone1 → cone2: %q", got)
	}

	// The hub comes back and relays again; then both symmetric NATs
	// become endpoint-independent: the pair moves to direct on its own.
	if err := hub.Up(); err != nil {
		t.Fatal(err)
	}
	waitPath(pair{"sym1", "sym2", "relay hub1"}, 2*time.Minute)
	for _, name := range []string{"sym1", "sym2"} {
		if err := nats[name].SetSymmetric(false); err != nil {
			t.Fatal(err)
		}
	}
	took := waitPath(pair{"sym1", "sym2", "direct"}, 3*time.Minute)
	t.Logf("figure: path opens → relayed pair direct: %s", took.Round(time.Millisecond))
	if _, err := node("sym1").Meshnode("ping", "--state", node("sym1").State, "--count", "1", "--timeout", "2s", "sym2"); err != nil {
		t.Fatalf("sym1 → sym2 direct: %v", err)
	}
}

// observedOf is n's endpoints as hubs see them.
func observedOf(t *testing.T, n *meshlab.Node) string {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(st.Observed)
}

// iperf runs one 3-second TCP stream from → to over the overlay and
// returns the received rate in Mbit/s.
func iperf(t *testing.T, from, to *meshlab.Node) float64 {
	t.Helper()
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Logf("no iperf3: no throughput figure")
		return 1
	}
	srv, _, err := to.Spawn("iperf3", "-s", "-1", "-B", to.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	var out string
	eventually(t, 20*time.Second, "iperf3 "+from.Name+" → "+to.Name, func() error {
		var err error
		out, err = from.NS.Run("iperf3", "-c", to.Addr, "-t", "3", "-J")
		return err
	})
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("iperf3 output: %v", err)
	}
	return res.End.SumReceived.BitsPerSecond / 1e6
}

// pathOf is the PATH column of n's status for member name.
func pathOf(n *meshlab.Node, name string) (string, error) {
	st, err := n.Status()
	if err != nil {
		return "", err
	}
	for _, m := range st.Members {
		if m.Name == name {
			return m.Path, nil
		}
	}
	return "", fmt.Errorf("%s does not list %s", n.Name, name)
}
