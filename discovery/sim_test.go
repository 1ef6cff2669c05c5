package discovery

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/meshnode/meshnode/discovery/discoverytest"
	"github.com/meshnode/meshnode/discovery/memtransport"
	"github.com/meshnode/meshnode/identity/identitytest"
	"github.com/meshnode/meshnode/mesh/meshtest"
)

// simNode is one member of a simulated mesh.
type simNode struct {
	name string
	addr netip.AddrPort // gossip address: the ticket's overlay address, as in production
	d    *Discovery
}

// simTimers are memberlist's settings for 100 members in one process on
// two cores under the race detector, between Fast and LAN. With Fast (30 ms
// gossip, 200 ms probes, a rejoin every second) the process saturates: acks
// come late, members are falsely declared dead, every member then rejoins
// them every second, and memberlist's node lock stays contended (the
// collapse feeds itself). Compression is off because LZW (a 64 KiB table per
// packet) is the largest CPU cost under -race; it changes bytes, not
// behaviour. scripts/bench/gossipsim measures with the shipped settings.
func simTimers(mc *memberlist.Config) {
	mc.GossipInterval = 200 * time.Millisecond
	mc.EnableCompression = false
	mc.ProbeInterval = 500 * time.Millisecond
	mc.ProbeTimeout = 250 * time.Millisecond
	mc.PushPullInterval = 2 * time.Second
	mc.GossipToTheDeadTime = 3 * time.Second
	mc.SuspicionMult = 3
	mc.TCPTimeout = 2 * time.Second
}

// startSim starts n real members (CA-signed tickets, signed meta, sealed
// gossip) on an in-memory network, each joining the first member.
func startSim(t *testing.T, n int, net *memtransport.Network) []*simNode {
	t.Helper()
	mesh := identitytest.NewMesh(t, "simmesh")
	members, err := mesh.Fleet(n, "m")
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*simNode, n)
	for i, m := range members {
		d, err := Start(context.Background(), Config{
			Member:         m,
			Transport:      net.NewTransport,
			Endpoints:      []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 51820)},
			NATSClientPort: 4222,
			NATSRoutePort:  6222,
			Fast:           false, // LAN rejoin backoff and sweeps, simTimers for memberlist
			Logger:         discoverytest.Logger("DISCOVERY_TEST_LOG", m.Ticket.Name),
			tune:           simTimers,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Shutdown() })
		nodes[i] = &simNode{name: m.Ticket.Name, addr: netip.AddrPortFrom(m.Ticket.Addr, DefaultPort), d: d}
	}
	for _, nd := range nodes[1:] {
		if _, err := nd.d.Join([]netip.AddrPort{nodes[0].addr}); err != nil {
			t.Fatalf("%s joining %s: %v", nd.name, nodes[0].name, err)
		}
	}
	return nodes
}

// expectStates checks that every observer sees every subject in state.
func expectStates(observers, subjects []*simNode, state State) error {
	for _, o := range observers {
		seen := map[string]State{}
		for _, m := range o.d.Members() {
			seen[m.Name] = m.State
		}
		missing := 0
		var first string
		for _, s := range subjects {
			if st, ok := seen[s.name]; !ok || st != state {
				if missing == 0 {
					first = fmt.Sprintf("%s (%v)", s.name, st)
				}
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%s does not see %d of %d members %v, e.g. %s", o.name, missing, len(subjects), state, first)
		}
	}
	return nil
}

// seesAnyDead reports whether o sees one of subjects dead.
func seesAnyDead(o *simNode, subjects []*simNode) bool {
	seen := map[string]State{}
	for _, m := range o.d.Members() {
		seen[m.Name] = m.State
	}
	for _, s := range subjects {
		if seen[s.name] == StateDead {
			return true
		}
	}
	return false
}

func without(nodes []*simNode, drop ...*simNode) []*simNode {
	var out []*simNode
	for _, n := range nodes {
		keep := true
		for _, d := range drop {
			keep = keep && n != d
		}
		if keep {
			out = append(out, n)
		}
	}
	return out
}

// TestSimulatedMesh100 runs 100 members on the in-memory network (1 ms ±
// 0.5 ms one way, 1% loss) with fast timers: they converge, all see a
// killed member dead, and a partition of 10 heals. It asserts behaviour
// with deadlines, not speed: scripts/bench/gossipsim measures.
func TestSimulatedMesh100(t *testing.T) {
	if testing.Short() {
		t.Skip("100 members: not in -short")
	}
	const n = 100
	net := memtransport.New(memtransport.Config{Latency: time.Millisecond, Jitter: 500 * time.Microsecond, Loss: 0.01, Seed: 15})
	start := time.Now()
	nodes := startSim(t, n, net)
	t.Logf("%d members started and joined in %s", n, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	poll := func(timeout time.Duration, what string, check func() error) {
		t.Helper()
		meshtest.EventuallyEvery(t, 200*time.Millisecond, timeout, what, check)
		t.Logf("%s: after %s", what, time.Since(start).Round(time.Millisecond))
		start = time.Now()
	}

	poll(60*time.Second, "every member sees every other alive", func() error {
		return expectStates(nodes, nodes, StateAlive)
	})
	for _, nd := range nodes {
		if r := nd.d.Rejections(); len(r) > 0 {
			t.Fatalf("%s refused gossiped nodes: %v", nd.name, r)
		}
	}

	killed := nodes[n/2]
	net.Kill(killed.addr.Addr())
	survivors := without(nodes, killed)
	poll(60*time.Second, "every survivor sees the killed member dead", func() error {
		return expectStates(survivors, []*simNode{killed}, StateDead)
	})

	minority := survivors[1:11] // not the seed: either side keeps a member the other knows
	majority := without(survivors, minority...)
	var cut []netip.Addr
	for _, nd := range minority {
		cut = append(cut, nd.addr.Addr())
	}
	heal := net.Partition(cut)
	// The majority probes each of the ten often; each of the ten probes
	// the 89 in turn, a full round every 45 s at these timers (SWIM's
	// round-robin), so the small side is only asked to have noticed.
	poll(60*time.Second, "the majority sees the cut-off ten dead, each of the ten some of the majority", func() error {
		if err := expectStates(majority, minority, StateDead); err != nil {
			return err
		}
		for _, o := range minority {
			if !seesAnyDead(o, majority) {
				return fmt.Errorf("%s sees every member of the other side alive", o.name)
			}
		}
		return nil
	})
	heal()
	// 5 s on a quiet machine; the deadline is for a loaded one.
	poll(2*time.Minute, "after the partition heals every survivor sees every other alive", func() error {
		return expectStates(survivors, survivors, StateAlive)
	})
	if err := expectStates(survivors, []*simNode{killed}, StateDead); err != nil {
		t.Fatalf("the killed member came back: %v", err)
	}
}
