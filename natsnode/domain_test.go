package natsnode

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startWithoutDomain runs cfg's nats-server in mode m as a core server
// did before it named its JetStream domain: the same options but no
// domain, and without authentication (only the test connects).
func startWithoutDomain(t *testing.T, cfg Config, m mode, members []Member) *server.Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	all := s.withSelf(members)
	o := s.options(m, routeURLs(all, cfg.Cluster.RouteSecret), nil)
	if o.JetStreamDomain != JetStreamDomain {
		t.Fatalf("options name the JetStream domain %q, want %q", o.JetStreamDomain, JetStreamDomain)
	}
	o.JetStreamDomain = ""
	o.CustomClientAuthentication, o.CustomRouterAuthentication = nil, nil
	o.NoLog = true
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatalf("%s without a domain not ready", cfg.ServerName)
	}
	return ns
}

// fillOldStore creates stream OLD (three messages, replicas r) and its
// durable pull consumer C (one message acked) on a server without a
// domain.
func fillOldStore(t *testing.T, ns *server.Server, r int) {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var st jetstream.Stream
	waitFor(t, 30*time.Second, "stream OLD to be created without a domain", func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, err = js.CreateStream(c, jetstream.StreamConfig{Name: "OLD", Subjects: []string{"old.>"}, Replicas: r})
		return err == nil
	})
	for i := range 3 {
		// The stream leader's interest in old.> reaches this server
		// shortly after the stream exists; a retry is deduplicated.
		id := fmt.Sprintf("m%d", i)
		waitFor(t, 10*time.Second, "a write to OLD without a domain", func() bool {
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := js.Publish(c, "old.x", []byte(id), jetstream.WithMsgID(id))
			return err == nil
		})
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if b.Error() != nil {
		t.Fatal(b.Error())
	}
}

// checkOldStore: stream OLD and consumer C are there, under the domain,
// C's ack floor is floor, and C delivers (and nc acks) the next message.
func checkOldStore(t *testing.T, nc *nats.Conn, who string, floor uint64) {
	t.Helper()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var st jetstream.Stream
	var err error
	waitFor(t, 30*time.Second, who+": stream OLD after the restart with the domain", func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, err = js.Stream(c, "OLD")
		return err == nil
	})
	for seq := uint64(1); seq <= 3; seq++ {
		if m, err := st.GetMsg(ctx, seq); err != nil || string(m.Data) != fmt.Sprintf("m%d", seq-1) {
			t.Errorf("%s: OLD message %d: %v", who, seq, err)
		}
	}
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ai.Domain != JetStreamDomain {
		t.Errorf("%s: JetStream domain %q, want %q", who, ai.Domain, JetStreamDomain)
	}
	// After a restart of every server the consumer elects its leader on
	// its own, possibly after the stream's; until then nobody answers.
	var cons jetstream.Consumer
	waitFor(t, 30*time.Second, who+": consumer C after the restart with the domain", func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		cons, err = st.Consumer(c, "C")
		return err == nil
	})
	if f := cons.CachedInfo().AckFloor.Stream; f != floor {
		t.Errorf("%s: consumer C ack floor %d, want %d", who, f, floor)
	}
	b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for m := range b.Messages() {
		got = string(m.Data())
		if err := m.DoubleAck(ctx); err != nil {
			t.Errorf("%s: ack: %v", who, err)
		}
	}
	if want := fmt.Sprintf("m%d", floor); got != want {
		t.Errorf("%s: consumer C delivered %q (%v), want %s", who, got, b.Error(), want)
	}
}

// TestJetStreamDomainKeepsStore: a core store written before the core
// servers named their JetStream domain (standalone, and a clustered R3
// stream with a durable consumer) keeps its streams and consumers when
// the servers start with the domain (the cluster one server at a time,
// writing in every mixed state); a leaf member's client then reads them
// through a core server.
func TestJetStreamDomainKeepsStore(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		lm := newLeafMesh(t)
		mCore, mLeaf, mClient := lm.ca.member(t, "core"), lm.ca.member(t, "leaf"), lm.ca.member(t, "client")
		lm.allowed.set(mLeaf, true)
		cfg := lm.coreConfig(mCore, true)
		old := startWithoutDomain(t, cfg, modeAlone, nil)
		fillOldStore(t, old, 1)
		old.Shutdown()
		old.WaitForShutdown()

		core := startNode(t, cfg, nil)
		if st := core.Status().JetStream; !st.Standalone {
			t.Fatalf("JetStream %+v, want standalone", st)
		}
		checkOldStore(t, connectLocal(t, core), "core", 1)
		leaf := startNode(t, lm.leafConfig(mLeaf, newKeySet(mClient)), []Member{leafMember(core)})
		waitLeafs(t, core, 1)
		nc, err := nats.Connect(leaf.ClientURL(), mClient.nkeyOpt(), nats.NoReconnect())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		checkOldStore(t, nc, "leaf client", 2)
	})
	t.Run("cluster", func(t *testing.T) {
		lm := newLeafMesh(t)
		mLeaf, mClient := lm.ca.member(t, "leaf"), lm.ca.member(t, "client")
		lm.allowed.set(mLeaf, true)
		cfgs := make([]Config, 3)
		all := make([]Member, 3)
		for k := range cfgs {
			cfgs[k] = lm.coreConfig(lm.ca.member(t, fmt.Sprintf("core%d", k)), true)
			cfgs[k].JetStream.BootstrapExpect = 3
			all[k] = Member{ServerName: cfgs[k].ServerName, Addr: loopback, RoutePort: cfgs[k].Cluster.Port, LeafPort: cfgs[k].Leaf.Port}
		}
		olds := make([]*server.Server, 3)
		for k := range cfgs {
			olds[k] = startWithoutDomain(t, cfgs[k], modeFull, all)
		}
		fillOldStore(t, olds[0], 3)

		// A rolling upgrade: one server at a time restarts with the
		// domain, and the R3 stream takes writes in every mixed state.
		var nodes []*testNode
		for k := range cfgs {
			olds[k].Shutdown()
			olds[k].WaitForShutdown()
			if !hasJetStreamState(cfgs[k].StoreDir) {
				t.Fatalf("%s: no meta-group state after the run without a domain", cfgs[k].ServerName)
			}
			nodes = append(nodes, startNode(t, cfgs[k], all))
			js, _ := jetstream.New(connectLocal(t, nodes[k]))
			waitFor(t, 30*time.Second, fmt.Sprintf("a write to OLD through %s with %d of 3 servers upgraded", cfgs[k].ServerName, k+1), func() bool {
				c, cancel := context.WithTimeout(t.Context(), 2*time.Second)
				defer cancel()
				_, err := js.Publish(c, "old.y", nil)
				return err == nil
			})
		}
		waitOneMetaGroup(t, 3, nodes...)
		checkOldStore(t, connectLocal(t, nodes[1]), "core1", 1)
		leaf := startNode(t, lm.leafConfig(mLeaf, newKeySet(mClient)), all)
		waitLeafs(t, leaf, 1)
		nc, err := nats.Connect(leaf.ClientURL(), mClient.nkeyOpt(), nats.NoReconnect())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		checkOldStore(t, nc, "leaf client", 2)
	})
}
