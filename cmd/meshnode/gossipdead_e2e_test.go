package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/scripts/meshlab"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
)

// TestGossipDeathNeedsWireGuard is issue 14's "dead for NATS only when
// gossip and the data plane agree": gamma's gossip is cut (its port
// dropped both ways inside gamma's namespace) while its WireGuard keeps
// working. alpha and beta's gossip declare it dead, but WireGuard answers
// the handshake they ask for, so its NATS routes stay and messages still
// reach it. Gossip heals. Then gamma is killed for real: WireGuard does
// not answer, and its routes go.
func TestGossipDeathNeedsWireGuard(t *testing.T) {
	lab := newLab(t)
	netnstest.RequireTool(t, "nft")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := lab.StartMesh(ctx, "gossipdead", []string{"alpha", "beta", "gamma"}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	alpha, beta, gamma := lab.Nodes[0], lab.Nodes[1], lab.Nodes[2]
	routeIDs := func(n *meshlab.Node) []uint64 {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, r := range st.NATS.Routes {
			ids = append(ids, r.ID)
		}
		slices.Sort(ids)
		return ids
	}
	before := map[string][]uint64{alpha.Name: routeIDs(alpha), beta.Name: routeIDs(beta)}

	// Cut gamma's gossip, and only its gossip.
	port := strconv.Itoa(defaults.GossipPort)
	rules := fmt.Sprintf(`table inet gossipcut {
  chain in { type filter hook input priority 0; udp dport %[1]s drop; tcp dport %[1]s drop; }
  chain out { type filter hook output priority 0; udp dport %[1]s drop; tcp dport %[1]s drop; }
}`, port)
	if err := nftApply(gamma, rules); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	healed := false
	heal := func() {
		if !healed {
			healed = true
			if _, err := gamma.NS.Run("nft", "delete", "table", "inet", "gossipcut"); err != nil {
				t.Error(err)
			}
		}
	}
	defer heal()

	for _, n := range []*meshlab.Node{alpha, beta} {
		eventually(t, 60*time.Second, n.Name+"'s gossip declares gamma dead", func() error {
			return memberState(n, "gamma", api.StateDead)
		})
	}
	t.Logf("figure: gossip cut → gamma dead in alpha's and beta's gossip: %s", time.Since(cut).Round(time.Millisecond))

	// For the next while, gossip keeps saying dead, and the routes stay:
	// the same route connections as before the cut, the message goes
	// through, and the metric says why.
	hold := time.Now().Add(2 * (defaults.NATSDeathProbeGrace + defaults.NATSDeathReask))
	for time.Now().Before(hold) {
		for _, n := range []*meshlab.Node{alpha, beta} {
			if err := memberState(n, "gamma", api.StateDead); err != nil {
				t.Fatalf("%v (gossip healed by itself?)", err)
			}
			if got := routeIDs(n); !slices.Equal(got, before[n.Name]) {
				t.Fatalf("%s: route connections %v while gossip alone calls gamma dead, want the same as before the cut %v\n%s", n.Name, got, before[n.Name], lab.Tails(40))
			}
		}
		time.Sleep(500 * time.Millisecond) // the sampling period of the hold check
	}
	c, cancelSend := context.WithTimeout(ctx, 20*time.Second)
	got, err := lab.SendAcross(c, alpha, gamma, "gossipdead.ping", "still here")
	cancelSend()
	if err != nil || got != "still here" {
		t.Fatalf("NATS alpha → gamma while gossip calls gamma dead: %q, %v", got, err)
	}
	e := scrape(t, alpha)
	wantMetric(t, alpha, e, "meshnode_gossip_deaths_refuted", nil, 1)
	wantMetric(t, alpha, e, "meshnode_wireguard_cutoff_addresses", nil, 0)

	// Gossip heals: gamma is alive again everywhere.
	heal()
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	wantMetric(t, alpha, scrape(t, alpha), "meshnode_gossip_deaths_refuted", nil, 0)

	// gamma dies for real: WireGuard does not answer, its routes go.
	gamma.Kill()
	killed := time.Now()
	for _, n := range []*meshlab.Node{alpha, beta} {
		eventually(t, 30*time.Second, n.Name+" drops gamma's NATS route", func() error {
			st, err := n.Status()
			if err != nil {
				return err
			}
			if slices.Contains(st.NATS.RouteServers, "gamma") || st.NATS.RoutesExpected != 1 {
				return fmt.Errorf("%s: route servers %v, expected %d", n.Name, st.NATS.RouteServers, st.NATS.RoutesExpected)
			}
			return memberState(n, "gamma", api.StateDead)
		})
	}
	t.Logf("figure: kill -9 → both survivors dropped gamma's NATS route: %s", time.Since(killed).Round(time.Millisecond))
}

func nftApply(n *meshlab.Node, rules string) error {
	cmd := n.NS.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", n.Name, err, out)
	}
	return nil
}
