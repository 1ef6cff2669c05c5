package natsnode

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The first node of a mesh (bootstrap_expect 3) serves core NATS and R1
// JetStream at once, alone. A second member joins: the lone node restarts
// once into the cluster, the newcomer (which waited with core NATS only)
// sees a JetStream peer and turns JetStream on, and the two form the meta
// group; the stream of the standalone run is adopted with its messages,
// its deduplication window and its durable consumer. A third member
// joins the group, and the stream scales to R3 with every replica
// current.
func TestLoneNodeGrowsToR3(t *testing.T) {
	cfgs := make([]Config, 3)
	all := make([]Member, 3)
	for k := range cfgs {
		cfgs[k] = baseConfig(t, fmt.Sprintf("grow%d", k), nil)
		withJetStream(t, &cfgs[k], 3)
		all[k] = Member{ServerName: cfgs[k].ServerName, Addr: loopback, RoutePort: cfgs[k].Cluster.Port}
	}
	ctx := t.Context()

	t0 := time.Now()
	n1 := startNode(t, cfgs[0], nil)
	select {
	case <-n1.Ready():
	default:
		t.Fatal("lone node: Start returned before core NATS was ready")
	}
	if st := n1.Status().JetStream; !st.Standalone || !st.Enabled || st.Waiting {
		t.Fatalf("lone node: JetStream %+v, want standalone", st)
	}
	// This connection lives through the restart into the cluster.
	nc, err := n1.ConnectInProcess(nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("hello")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("hello", []byte("first")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "first" {
		t.Fatalf("core NATS on the lone node: %v %v", m, err)
	}
	t.Logf("lone node: core NATS message %v after Start", time.Since(t0).Round(time.Millisecond))

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LONE", Subjects: []string{"lone.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("R1 stream on the lone node: %v", err)
	}
	const total = 100
	for i := range total {
		if _, err := js.Publish(ctx, "lone.m", []byte(strconv.Itoa(i)), jetstream.WithMsgID("m-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "WORK", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(10)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// The second member.
	n2 := startNode(t, cfgs[1], all[:2])
	if st := n2.Status().JetStream; !st.Waiting || st.Enabled {
		t.Fatalf("second node: JetStream %+v, want waiting (core NATS only)", st)
	}
	n1.SetMembers(all[:2])
	waitOneMetaGroup(t, 2, n1, n2)
	waitFor(t, 20*time.Second, "the standalone stream to be adopted", func() bool {
		st := n1.Status().JetStream
		return st.Adopting == 0 && !st.Standalone
	})
	if st := n1.Status().JetStream; st.AdoptError != "" {
		t.Fatalf("adoption: %s", st.AdoptError)
	}
	checkForwarding(t, n1, n2)
	checkForwarding(t, n2, n1)
	js2, _ := jetstream.New(connectLocal(t, n2))
	info := streamInfo(t, js2, "LONE")
	if info.State.Msgs != total || info.Config.Placement != nil || info.Config.Replicas != 1 {
		t.Fatalf("adopted stream: %d messages (want %d), placement %+v, replicas %d", info.State.Msgs, total, info.Config.Placement, info.Config.Replicas)
	}
	ci, err := consumerInfo(ctx, js2, "LONE", "WORK")
	if err != nil || ci.AckFloor.Stream != 10 {
		t.Fatalf("adopted durable consumer: %+v %v, want ack floor 10", ci, err)
	}
	// The connection made before the restart works again, through the
	// new server.
	waitFor(t, 10*time.Second, "the old in-process connection to reconnect", func() bool {
		return nc.IsConnected()
	})
	ack, err := js.Publish(ctx, "lone.m", []byte("again"), jetstream.WithMsgID("m-7"))
	if err != nil || !ack.Duplicate {
		t.Fatalf("a known Msg-Id after adoption: %+v %v, want a duplicate", ack, err)
	}

	// The third member, and the scale-up.
	n3 := startNode(t, cfgs[2], all)
	n1.SetMembers(all)
	n2.SetMembers(all)
	waitOneMetaGroup(t, 3, n1, n2, n3)
	js3, _ := jetstream.New(connectLocal(t, n3))
	cfg := info.Config
	cfg.Replicas = 3
	t1 := time.Now()
	waitFor(t, 20*time.Second, "the stream update to R3", func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = js3.UpdateStream(c, cfg)
		return err == nil
	})
	waitFor(t, 30*time.Second, "every R3 replica to be current", func() bool {
		info = streamInfo(t, js3, "LONE")
		if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return false
			}
		}
		return true
	})
	t.Logf("R1 → R3: all replicas current %v after the update", time.Since(t1).Round(time.Millisecond))
	if info.State.Msgs != total || info.Config.Replicas != 3 {
		t.Fatalf("R3 stream: %d messages, replicas %d", info.State.Msgs, info.Config.Replicas)
	}
	for _, n := range []*testNode{n1, n2, n3} {
		waitFor(t, 20*time.Second, n.name+" to hold a current replica", func() bool {
			return n.srv().JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, "LONE")
		})
	}
}

func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info
}

func consumerInfo(ctx context.Context, js jetstream.JetStream, stream, name string) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, stream, name)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// Trap: nats-server restarted with a cluster does not take in the streams
// of its standalone run. It recovers them from disk, but the meta group
// has no assignment for them (the API answers "stream not found") and
// checkForOrphans deletes them 30 s after the meta layer recovered. This
// is the plain server, without natsnode's set-aside and adoption.
func TestTrapStandaloneStreamsAreOrphans(t *testing.T) {
	dir := t.TempDir()
	opts := func(name, dir string, cport int, routes []*url.URL) *server.Options {
		o := &server.Options{ServerName: name, Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
			JetStream: true, StoreDir: dir, JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 256 << 20}
		if cport != 0 {
			o.Cluster = server.ClusterOpts{Name: "trap", Host: "127.0.0.1", Port: cport}
			o.Routes = routes
		}
		return o
	}
	run := func(o *server.Options) *server.Server {
		ns, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("server not ready")
		}
		t.Cleanup(ns.Shutdown)
		return ns
	}
	lone := run(opts("o1", dir, 0, nil))
	nc, err := nats.Connect(lone.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "ORPHAN", Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	lone.Shutdown()
	lone.WaitForShutdown()

	p1, p2 := freePort(t), freePort(t)
	routes := []*url.URL{{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p1)}, {Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p2)}}
	s1 := run(opts("o1", dir, p1, routes))
	run(opts("o2", t.TempDir(), p2, routes))
	if _, err := os.Stat(filepath.Join(streamsDir(dir), "ORPHAN")); err != nil {
		t.Fatalf("stream directory not recovered: %v", err)
	}
	nc, err = nats.Connect(s1.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	waitFor(t, 20*time.Second, "a meta leader", func() bool {
		_, err := js.AccountInfo(t.Context())
		return err == nil
	})
	if _, err := js.Stream(t.Context(), "ORPHAN"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("standalone stream seen by the meta group: %v (nats-server adopts them now?)", err)
	}
	if testing.Short() {
		return
	}
	waitFor(t, 45*time.Second, "checkForOrphans to delete the stream", func() bool {
		_, err := os.Stat(filepath.Join(streamsDir(dir), "ORPHAN"))
		return errors.Is(err, os.ErrNotExist)
	})
}

// Trap: a restarted nats-server numbers its connections from 1 again. What
// a connection of the old server proved, keyed by its id, must not be
// found under the same id on the new one: clientAuth would admit that
// connection without asking it to prove anything.
func TestTrapRestartForgetsConnectionIDs(t *testing.T) {
	cfgs := make([]Config, 2)
	all := make([]Member, 2)
	for k := range cfgs {
		cfgs[k] = baseConfig(t, fmt.Sprintf("ids%d", k), nil)
		withJetStream(t, &cfgs[k], 2)
		all[k] = Member{ServerName: cfgs[k].ServerName, Addr: loopback, RoutePort: cfgs[k].Cluster.Port}
	}
	// No safety-net recheck (it forgets ids the server no longer has):
	// only the restart itself may clear them.
	cfgs[0].RecheckInterval = time.Hour
	n := startNode(t, cfgs[0], nil)
	if !n.Status().JetStream.Standalone {
		t.Fatalf("not standalone: %+v", n.Status().JetStream)
	}
	const stale = 4242
	n.clientAuth.mu.Lock()
	n.clientAuth.conns[stale] = authConn{role: RoleAdmin}
	n.clientAuth.internal[stale+1] = true
	n.clientAuth.mu.Unlock()
	n.routeAuth.mu.Lock()
	n.routeAuth.accepted[stale] = acceptedRoute{remote: loopback}
	n.routeAuth.mu.Unlock()

	startNode(t, cfgs[1], all)
	n.SetMembers(all)
	waitFor(t, 20*time.Second, "the restart into the cluster", func() bool {
		st := n.Status()
		return st.Running && !st.JetStream.Standalone
	})
	n.clientAuth.mu.Lock()
	_, c := n.clientAuth.conns[stale]
	_, i := n.clientAuth.internal[stale+1]
	n.clientAuth.mu.Unlock()
	n.routeAuth.mu.Lock()
	_, r := n.routeAuth.accepted[stale]
	n.routeAuth.mu.Unlock()
	if c || i || r {
		t.Fatalf("connection ids of the old server survived the restart: client %v internal %v route %v", c, i, r)
	}
}

// nextMode is the whole bootstrap policy: pin it as a table.
func TestNextMode(t *testing.T) {
	m := func(k int) Member {
		return Member{ServerName: "m" + strconv.Itoa(k), Addr: loopback, RoutePort: 7000 + k}
	}
	one, two, three := []Member{m(0)}, []Member{m(0), m(1)}, []Member{m(0), m(1), m(2)}
	type state int
	const (
		fresh state = iota
		standalone
		meta
	)
	cases := []struct {
		name    string
		expect  int
		store   state
		cur     mode
		started bool
		all     []Member
		jsPeer  bool
		want    mode
	}{
		{"alone", 3, fresh, modeFull, false, one, false, modeAlone},
		{"alone expect 1", 1, fresh, modeFull, false, one, false, modeAlone},
		{"two of three", 3, fresh, modeFull, false, two, false, modeCore},
		{"two of three, peer runs JetStream", 3, fresh, modeCore, true, two, true, modeFull},
		{"three of three", 3, fresh, modeFull, false, three, false, modeFull},
		{"core reaches expect", 3, fresh, modeCore, true, three, false, modeFull},
		{"core loses members", 3, fresh, modeCore, true, one, false, modeCore},
		{"lone node gets a member", 3, standalone, modeAlone, true, two, false, modeFull},
		{"standalone store restarts with a member", 3, standalone, modeFull, false, two, false, modeFull},
		{"standalone store restarts alone", 3, standalone, modeFull, false, one, false, modeAlone},
		{"meta state", 3, meta, modeFull, false, one, false, modeFull},
		{"full stays full", 3, fresh, modeFull, true, one, false, modeFull},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, "mode", nil)
			withJetStream(t, &cfg, tc.expect)
			switch tc.store {
			case standalone:
				if err := os.MkdirAll(streamsDir(cfg.StoreDir), 0o700); err != nil {
					t.Fatal(err)
				}
			case meta:
				p := filepath.Join(cfg.StoreDir, server.JetStreamStoreDir, server.DEFAULT_SYSTEM_ACCOUNT, "_js_", "_meta_")
				if err := os.MkdirAll(p, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(p, "peers.idx"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.nextMode(tc.cur, tc.started, tc.all, tc.jsPeer); got != tc.want {
				t.Fatalf("nextMode = %s, want %s", got, tc.want)
			}
		})
	}
	// Without JetStream, or without a cluster, there is nothing to wait for.
	cfg := baseConfig(t, "plain", nil)
	s, _ := New(cfg)
	if got := s.nextMode(modeFull, false, one, false); got != modeFull {
		t.Fatalf("no JetStream: %s", got)
	}
	cfg = baseConfig(t, "single", nil)
	withJetStream(t, &cfg, 3)
	cfg.Cluster = ClusterConfig{}
	s, _ = New(cfg)
	if got := s.nextMode(modeFull, false, one, false); got != modeFull {
		t.Fatalf("no cluster: %s", got)
	}
}
