package natsnode

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// jsCluster starts n JetStream servers that all know each other.
func jsCluster(t *testing.T, n, expect int) ([]*testNode, []Config) {
	t.Helper()
	return jsClusterWith(t, n, expect, nil)
}

// jsClusterWith is jsCluster with each config passed through edit first.
func jsClusterWith(t *testing.T, n, expect int, edit func(*Config)) ([]*testNode, []Config) {
	t.Helper()
	cfgs := make([]Config, n)
	ms := make([]Member, n)
	for i := range cfgs {
		cfgs[i] = baseConfig(t, fmt.Sprintf("js%d", i), nil)
		withJetStream(t, &cfgs[i], expect)
		if edit != nil {
			edit(&cfgs[i])
		}
		ms[i] = Member{ServerName: cfgs[i].ServerName, Addr: loopback, RoutePort: cfgs[i].Cluster.Port}
	}
	nodes := make([]*testNode, n)
	for i := range cfgs {
		nodes[i] = startNode(t, cfgs[i], ms)
	}
	return nodes, cfgs
}

// waitOneMetaGroup waits until every node runs JetStream and all agree on
// one meta leader in a group of size want.
func waitOneMetaGroup(t *testing.T, want int, nodes ...*testNode) {
	t.Helper()
	var last []JetStreamStatus
	defer func() {
		if t.Failed() {
			t.Logf("last JetStream status: %+v", last)
			for _, n := range nodes {
				if jsz, err := n.srv().Jsz(nil); err == nil && jsz.Meta != nil {
					b, _ := json.Marshal(jsz.Meta)
					t.Logf("%s meta: %s", n.name, b)
				}
			}
		}
	}()
	waitFor(t, 30*time.Second, fmt.Sprintf("one meta group of %d", want), func() bool {
		leader := ""
		last = last[:0]
		for _, n := range nodes {
			last = append(last, n.Status().JetStream)
		}
		for _, js := range last {
			if !js.Enabled || js.MetaLeader == "" || js.ClusterSize != want {
				return false
			}
			if leader == "" {
				leader = js.MetaLeader
			} else if js.MetaLeader != leader {
				return false
			}
		}
		return true
	})
}

// waitPlacement waits until the meta leader can place a stream. Right
// after the election it may not: nats-server selects only servers it has
// had a statsz from (nodeInfo.selectable), itself included, and answers
// "no suitable peers for placement, peer offline" until then. The probe
// stream is deleted again, so account limits are untouched.
func waitPlacement(t *testing.T, n *testNode) {
	t.Helper()
	js, _ := jetstream.New(connectLocal(t, n))
	waitFor(t, 20*time.Second, "a stream to be placeable", func() bool {
		c, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if _, err := js.CreateStream(c, jetstream.StreamConfig{Name: "PLACEMENT_PROBE", Storage: jetstream.MemoryStorage}); err != nil {
			return false
		}
		return js.DeleteStream(c, "PLACEMENT_PROBE") == nil
	})
}

func metaPeers(t *testing.T, n *testNode) []string {
	t.Helper()
	jsz, err := n.srv().Jsz(nil)
	if err != nil || jsz.Meta == nil {
		t.Fatalf("jsz on %s: %v", n.name, err)
	}
	// Replicas lists every peer but the asking server itself.
	names := []string{n.name}
	for _, r := range jsz.Meta.Replicas {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func TestJetStreamR3SurvivesServerLoss(t *testing.T) {
	nodes, cfgs := jsCluster(t, 3, 3)
	waitOneMetaGroup(t, 3, nodes...)

	nc := connectLocal(t, nodes[0])
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var stream jetstream.Stream
	waitFor(t, 20*time.Second, "R3 stream created", func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		stream, err = js.CreateStream(c, jetstream.StreamConfig{
			Name: "EVENTS", Subjects: []string{"events.>"}, Replicas: 3, Storage: jetstream.FileStorage,
		})
		return err == nil
	})

	// The victim is the stream leader unless that is the server the
	// client is on.
	victim := 1
	for i, n := range nodes[1:] {
		if n.srv().JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, "EVENTS") {
			victim = i + 1
		}
	}

	const total = 1000
	acked := map[uint64]string{} // stream sequence → payload
	for i := range total {
		if i == total/2 {
			nodes[victim].Shutdown()
		}
		payload := strconv.Itoa(i)
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			ack, err := js.Publish(c, "events.n", []byte(payload), jetstream.WithMsgID("m-"+payload))
			cancel()
			if err == nil {
				if prev, dup := acked[ack.Sequence]; dup && prev != payload {
					t.Fatalf("sequence %d acked for %q and %q", ack.Sequence, prev, payload)
				}
				acked[ack.Sequence] = payload
				break
			}
			// Retrying with the same message ID is safe: the stream
			// deduplicates it.
			if time.Now().After(deadline) {
				t.Fatalf("publish %d never acked: %v", i, err)
			}
		}
	}
	if len(acked) != total {
		t.Fatalf("%d distinct acks, want %d", len(acked), total)
	}
	for seq, payload := range acked {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := stream.GetMsg(c, seq)
		cancel()
		if err != nil {
			t.Fatalf("acked message %d (seq %d) unreadable: %v", i(payload), seq, err)
		}
		if string(m.Data) != payload {
			t.Fatalf("seq %d = %q, want %q", seq, m.Data, payload)
		}
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != total {
		t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, total)
	}

	// A store with meta-group state starts JetStream at once, even when
	// only itself is known (fewer than bootstrap_expect).
	re := startNode(t, cfgs[victim], nil)
	if st := re.Status().JetStream; !st.Enabled || st.Known != 1 || st.Expect != 3 {
		t.Fatalf("restart with state: JetStream %+v, want enabled at once", st)
	}
	re.SetMembers(members(nodes...))
	waitFor(t, 30*time.Second, "restarted server's replica to catch up", func() bool {
		return re.srv().JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, "EVENTS")
	})
	re.Shutdown()

	// A retired server leaves the meta group through RemovePeer.
	name := cfgs[victim].ServerName
	if !slices.Contains(metaPeers(t, nodes[0]), name) {
		t.Fatalf("%s not in meta group before removal: %v", name, metaPeers(t, nodes[0]))
	}
	// MetaGroup lists the offline server too, and names the leader.
	leader, peers, err := nodes[0].MetaGroup()
	if err != nil || !slices.Contains(peers, name) || !slices.Contains(peers, leader) || len(peers) != 3 {
		t.Fatalf("MetaGroup before removal: leader %q, peers %v, %v", leader, peers, err)
	}
	waitFor(t, 20*time.Second, "RemovePeer to succeed", func() bool {
		err = nodes[0].RemovePeer(name)
		return err == nil
	})
	waitFor(t, 20*time.Second, name+" gone from the meta group", func() bool {
		return !slices.Contains(metaPeers(t, nodes[0]), name)
	})
	if _, peers, err := nodes[0].MetaGroup(); err != nil || slices.Contains(peers, name) {
		t.Fatalf("MetaGroup after removal: %v, %v", peers, err)
	}
	if err := nodes[0].RemovePeer("no-such-server"); err == nil {
		t.Fatal("RemovePeer of an unknown server succeeded")
	}
}

func i(s string) int { n, _ := strconv.Atoi(s); return n }

// Two of three expected members know each other and the third is alone:
// nobody bootstraps a meta group. The two run core NATS (routed to each
// other) without JetStream; the lone one runs JetStream without a cluster,
// which has no meta group to split. Once all three are known, exactly one
// meta group forms.
func TestBootstrapGuardPreventsSeparateMetaGroups(t *testing.T) {
	cfgs := make([]Config, 3)
	all := make([]Member, 3)
	for k := range cfgs {
		cfgs[k] = baseConfig(t, fmt.Sprintf("bg%d", k), nil)
		withJetStream(t, &cfgs[k], 3)
		all[k] = Member{ServerName: cfgs[k].ServerName, Addr: loopback, RoutePort: cfgs[k].Cluster.Port}
	}
	a := startNode(t, cfgs[0], all[:2])
	b := startNode(t, cfgs[1], all[:2])
	c := startNode(t, cfgs[2], all[2:])
	// a and b know each other and would have had a quorum of 2 of 2: the
	// guard keeps JetStream off on both, with no meta-group state
	// written, while core NATS serves and routes between them.
	for _, n := range []*testNode{a, b} {
		st := n.Status()
		if !st.Running || st.JetStream.Enabled || !st.JetStream.Waiting || st.JetStream.Expect != 3 {
			t.Fatalf("%s: %+v, want core NATS running and JetStream waiting", n.name, st)
		}
	}
	checkForwarding(t, a, b)
	if st := c.Status().JetStream; !st.Standalone || !st.Enabled || st.Waiting || st.MetaLeader != "" {
		t.Fatalf("lone c: JetStream %+v, want standalone", st)
	}
	if k := a.Status().JetStream.Known; k != 2 {
		t.Fatalf("a knows %d members, want 2", k)
	}
	// More member updates below the threshold change nothing.
	a.SetMembers(all[:2])
	b.SetMembers(all[:2])
	time.Sleep(3 * bootstrapTick)
	for _, n := range []*testNode{a, b, c} {
		if hasJetStreamState(n.cfg.StoreDir) || n.srv().JetStreamIsClustered() {
			t.Fatalf("%s started a meta group below bootstrap_expect", n.name)
		}
	}
	for _, n := range []*testNode{a, b} {
		if st := n.Status().JetStream; st.Enabled || !st.Waiting {
			t.Fatalf("%s: JetStream %+v below bootstrap_expect", n.name, st)
		}
	}

	for _, n := range []*testNode{a, b, c} {
		n.SetMembers(all)
	}
	waitOneMetaGroup(t, 3, a, b, c)
	// Peers register with the leader as they are heard from: wait until
	// every server sees the same three.
	want := []string{"bg0", "bg1", "bg2"}
	for _, n := range []*testNode{a, b, c} {
		waitFor(t, 20*time.Second, n.name+" to see all three meta peers", func() bool {
			return slices.Equal(metaPeers(t, n), want)
		})
	}
	// One group: a stream made through c is seen through a.
	jc, _ := jetstream.New(connectLocal(t, c))
	ja, _ := jetstream.New(connectLocal(t, a))
	waitFor(t, 20*time.Second, "stream via c", func() bool {
		cx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := jc.CreateStream(cx, jetstream.StreamConfig{Name: "ONE", Subjects: []string{"one"}, Replicas: 3})
		return err == nil
	})
	if _, err := ja.Stream(t.Context(), "ONE"); err != nil {
		t.Fatalf("stream made via c not visible via a: %v", err)
	}
}

// bootstrap_expect 1 starts JetStream at once, without a cluster (nats-server
// never lets a clustered meta group be smaller than two: its raft floors
// the boot cluster size at 2). When the second member arrives the two
// form one meta group.
func TestBootstrapExpectOne(t *testing.T) {
	c1 := baseConfig(t, "one", nil)
	withJetStream(t, &c1, 1)
	c2 := baseConfig(t, "two", nil)
	withJetStream(t, &c2, 2)
	m1 := Member{ServerName: "one", Addr: loopback, RoutePort: c1.Cluster.Port}
	m2 := Member{ServerName: "two", Addr: loopback, RoutePort: c2.Cluster.Port}
	n1 := startNode(t, c1, nil)
	if !n1.Status().JetStream.Enabled {
		t.Fatalf("bootstrap_expect 1: JetStream not started: %+v", n1.Status().JetStream)
	}
	n2 := startNode(t, c2, []Member{m1, m2})
	n1.SetMembers([]Member{m1, m2})
	waitOneMetaGroup(t, 2, n1, n2)
}

func TestJetStreamNotConfigured(t *testing.T) {
	n := startNode(t, baseConfig(t, "plain", nil), nil)
	st := n.Status().JetStream
	if st.Configured || st.Enabled || st.Waiting {
		t.Fatalf("JetStream status %+v", st)
	}
	if err := n.RemovePeer("x"); err == nil {
		t.Fatal("RemovePeer without JetStream succeeded")
	}
	if _, _, err := n.MetaGroup(); err == nil {
		t.Fatal("MetaGroup without JetStream succeeded")
	}
}
