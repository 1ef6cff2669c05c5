package natsnode

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshnode/meshnode/identity"
)

// roleSet maps members to roles for Config.Role; unknown keys are members.
type roleSet struct {
	mu    sync.Mutex
	roles map[identity.NodePublic]Role
}

func (r *roleSet) set(m *member, role Role) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.roles == nil {
		r.roles = map[identity.NodePublic]Role{}
	}
	r.roles[m.id.Public()] = role
}

func (r *roleSet) role(k identity.NodePublic) Role {
	r.mu.Lock()
	defer r.mu.Unlock()
	if role, ok := r.roles[k]; ok {
		return role
	}
	return RoleMember
}

// asyncErrs collects a connection's asynchronous errors (permission
// violations arrive that way).
type asyncErrs struct {
	mu   sync.Mutex
	errs []error
}

func (a *asyncErrs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs = append(a.errs, err)
}

func (a *asyncErrs) has(sub string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.errs {
		if strings.Contains(strings.ToLower(e.Error()), "permissions violation") && strings.Contains(e.Error(), sub) {
			return true
		}
	}
	return false
}

// permCluster is a two-server JetStream cluster (the smallest that elects a
// meta leader) that admits admin and member over TCP.
func permCluster(t *testing.T, edit func(*Config)) (nodes []*testNode, admin, mem *member, roles *roleSet) {
	t.Helper()
	ca := newTestCA(t)
	admin, mem = ca.member(t, "admin"), ca.member(t, "alice")
	ks := newKeySet(admin, mem)
	roles = &roleSet{}
	roles.set(admin, RoleAdmin)
	nodes, _ = jsClusterWith(t, 2, 2, func(c *Config) {
		c.Authorize = ks.has
		c.Role = roles.role
		if edit != nil {
			edit(c)
		}
	})
	waitOneMetaGroup(t, 2, nodes...)
	waitPlacement(t, nodes[0])
	return nodes, admin, mem, roles
}

func dial(t *testing.T, n *testNode, m *member, errs *asyncErrs) *nats.Conn {
	t.Helper()
	opts := []nats.Option{m.nkeyOpt(), nats.NoReconnect()}
	if errs != nil {
		opts = append(opts, nats.ErrorHandler(errs.handler))
	}
	nc, err := nats.Connect(n.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("%s connect: %v", m.name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// An ordinary member cannot read the system account or administer
// JetStream, but can use the data plane; an admin can do everything. Every
// refusal here was allowed before roles existed.
func TestMemberPermissions(t *testing.T) {
	nodes, admin, alice, _ := permCluster(t, nil)
	var aliceErrs asyncErrs
	anc := dial(t, nodes[0], admin, nil)
	mnc := dial(t, nodes[0], alice, &aliceErrs)
	ajs, err := jetstream.New(anc)
	if err != nil {
		t.Fatal(err)
	}
	mjs, err := jetstream.New(mnc)
	if err != nil {
		t.Fatal(err)
	}
	ctxFor := func(d time.Duration) context.Context {
		c, cancel := context.WithTimeout(context.Background(), d)
		t.Cleanup(cancel)
		return c
	}
	ctx := func() context.Context { return ctxFor(5 * time.Second) }
	// A refused request is never answered: nats.go waits out its context.
	refused := func() context.Context { return ctxFor(750 * time.Millisecond) }

	// The system account: no subscription, no answers.
	if _, err := mnc.SubscribeSync("$SYS.>"); err != nil {
		t.Fatal(err)
	}
	mnc.Flush()
	waitFor(t, 5*time.Second, "subscription to $SYS.> refused", func() bool { return aliceErrs.has("$SYS.>") })
	for _, subj := range []string{"$SYS.REQ.ACCOUNT.PING.CONNZ", "$SYS.REQ.USER.INFO"} {
		if _, err := anc.Request(subj, nil, 2*time.Second); err != nil {
			t.Fatalf("admin %s: %v", subj, err)
		}
		if m, err := mnc.Request(subj, nil, time.Second); err == nil {
			t.Fatalf("member got an answer from %s: %.80s", subj, m.Data)
		}
	}
	// Nor can it listen in on the JetStream API.
	if _, err := mnc.SubscribeSync("$JS.API.STREAM.CREATE.*"); err != nil {
		t.Fatal(err)
	}
	mnc.Flush()
	waitFor(t, 5*time.Second, "subscription to the JetStream API refused", func() bool { return aliceErrs.has("$JS.API.STREAM.CREATE.*") })
	// Nor read the API audit advisory, which carries every request.
	if _, err := mnc.SubscribeSync(server.JSAuditAdvisory); err != nil {
		t.Fatal(err)
	}
	mnc.Flush()
	waitFor(t, 5*time.Second, "subscription to the API audit advisory refused", func() bool { return aliceErrs.has(server.JSAuditAdvisory) })
	// A wildcard over both is filtered on delivery: the admin's request,
	// then a marker; once the marker is here, the request would be too.
	all, err := mnc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	mnc.Flush()
	if _, err := ajs.AccountInfo(ctx()); err != nil {
		t.Fatal(err)
	}
	anc.Publish("marker.all", nil)
	for {
		m, err := all.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("the marker did not reach the member's \">\": %v", err)
		}
		if m.Subject == "marker.all" {
			break
		}
		if isJetStreamAPI(m.Subject) {
			t.Errorf("the member's \">\" received %s", m.Subject)
		}
	}
	all.Unsubscribe()

	// Streams: only the admin creates, updates, purges and deletes.
	cfg := jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}
	if _, err := mjs.CreateStream(refused(), cfg); err == nil {
		t.Fatal("member created a stream")
	}
	if _, err := ajs.CreateStream(ctx(), cfg); err != nil {
		t.Fatalf("admin create stream: %v", err)
	}
	// Ordinary application traffic into the stream, with acks, and its
	// state are the member's.
	for i := range 3 {
		if _, err := mjs.Publish(ctx(), "orders.new", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("member publish into stream: %v", err)
		}
	}
	st, err := mjs.Stream(ctx(), "ORDERS")
	if err != nil {
		t.Fatalf("member stream info: %v", err)
	}
	if st.CachedInfo().State.Msgs != 3 {
		t.Fatalf("stream holds %d messages, want 3", st.CachedInfo().State.Msgs)
	}
	if _, err := mjs.AccountInfo(ctx()); err != nil {
		t.Fatalf("member $JS.API.INFO: %v", err)
	}
	cfg.Description = "changed"
	if _, err := mjs.UpdateStream(refused(), cfg); err == nil {
		t.Fatal("member updated a stream")
	}
	if err := st.Purge(refused()); err == nil {
		t.Fatal("member purged a stream")
	}
	if err := st.DeleteMsg(refused(), 1); err == nil {
		t.Fatal("member deleted a message")
	}
	if err := mjs.DeleteStream(refused(), "ORDERS"); err == nil {
		t.Fatal("member deleted a stream")
	}

	// Consumers: members use the ones an admin makes (read, pull, ack)
	// and cannot create, change or delete any (see memberDeny for why
	// "only their own" is not expressible).
	if _, err := mjs.CreateOrUpdateConsumer(refused(), "ORDERS", jetstream.ConsumerConfig{Durable: "alice"}); err == nil {
		t.Fatal("member created a consumer")
	}
	if _, err := ajs.CreateOrUpdateConsumer(ctx(), "ORDERS", jetstream.ConsumerConfig{Durable: "work", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatalf("admin create consumer: %v", err)
	}
	cons, err := mjs.Consumer(ctx(), "ORDERS", "work")
	if err != nil {
		t.Fatalf("member consumer info: %v", err)
	}
	// The consumer's leader is elected a moment after the create: until
	// then a pull has no responders, so fetch until the deadline.
	got := 0
	var lastErr error
	waitFor(t, 15*time.Second, "the member to fetch and ack 3 messages", func() bool {
		batch, err := cons.Fetch(3-got, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			lastErr = err
			return false
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx()); err != nil {
				t.Fatalf("member ack: %v", err)
			}
			got++
		}
		lastErr = batch.Error()
		return got >= 3
	})
	if got != 3 {
		t.Fatalf("member fetched %d messages, want 3 (%v)", got, lastErr)
	}
	if err := mjs.DeleteConsumer(refused(), "ORDERS", "work"); err == nil {
		t.Fatal("member deleted another's consumer")
	}
	if _, err := ajs.Consumer(ctx(), "ORDERS", "work"); err != nil {
		t.Fatalf("consumer gone after the member's delete: %v", err)
	}

	// The admin can do all of it.
	if err := ajs.DeleteConsumer(ctx(), "ORDERS", "work"); err != nil {
		t.Fatalf("admin delete consumer: %v", err)
	}
	ast, err := ajs.Stream(ctx(), "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	if err := ast.Purge(ctx()); err != nil {
		t.Fatalf("admin purge: %v", err)
	}
	if err := ajs.DeleteStream(ctx(), "ORDERS"); err != nil {
		t.Fatalf("admin delete stream: %v", err)
	}

	// Plain pub/sub between members is untouched.
	sub, err := mnc.SubscribeSync("app.>")
	if err != nil {
		t.Fatal(err)
	}
	mnc.Flush()
	if err := anc.Publish("app.hello", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(2 * time.Second); err != nil {
		t.Fatalf("member did not receive application traffic: %v", err)
	}
	if err := mnc.Flush(); err != nil {
		t.Fatalf("member connection broken by the refusals: %v", err)
	}
}

// Every JetStream API subject that changes state is refused to a member,
// and every read-only one is allowed: the deny list against nats-server's
// own subject names, so a family missed or a read blocked shows here.
func TestMemberDenyList(t *testing.T) {
	perms := permissions(RoleMember)
	denied := func(subj string) bool {
		for _, d := range perms.Publish.Deny {
			if subjectMatch(d, subj) {
				return true
			}
		}
		return false
	}
	for _, s := range []string{
		"$SYS.REQ.ACCOUNT.PING.CONNZ", "$SYS.REQ.USER.INFO", "$SYS.REQ.SERVER.PING",
		"$JS.API.STREAM.CREATE.S", "$JS.API.STREAM.UPDATE.S", "$JS.API.STREAM.DELETE.S",
		"$JS.API.STREAM.PURGE.S", "$JS.API.STREAM.MSG.DELETE.S", "$JS.API.STREAM.SNAPSHOT.S",
		"$JS.API.STREAM.RESTORE.S", "$JS.API.STREAM.PEER.REMOVE.S", "$JS.API.STREAM.PEER.EVACUATE.S",
		"$JS.API.STREAM.LEADER.STEPDOWN.S", "$JS.API.STREAM.CANCEL_MOVE.S",
		"$JS.API.CONSUMER.CREATE.S", "$JS.API.CONSUMER.CREATE.S.C", "$JS.API.CONSUMER.CREATE.S.C.f.>",
		"$JS.API.CONSUMER.DURABLE.CREATE.S.C", "$JS.API.CONSUMER.DELETE.S.C", "$JS.API.CONSUMER.PAUSE.S.C",
		"$JS.API.CONSUMER.UNPIN.S.C", "$JS.API.CONSUMER.RESET.S.C", "$JS.API.CONSUMER.PEER.REMOVE.S.C",
		"$JS.API.CONSUMER.PEER.EVACUATE.S.C", "$JS.API.CONSUMER.LEADER.STEPDOWN.S.C",
		server.JSApiLeaderStepDown, server.JSApiRemoveServer, "$JS.API.SERVER.EVACUATE", "$JS.API.META.RESCUE",
		"$JS.API.ACCOUNT.PURGE.A", "$JS.API.ACCOUNT.STREAM.MOVE.A.S", "$JS.API.ACCOUNT.STREAM.CANCEL_MOVE.A.S",
		"$JS.SNAPSHOT.ACK.S.x", "$JS.SNAPSHOT.RESTORE.S.x",
	} {
		if !denied(s) {
			t.Errorf("member may publish %s", s)
		}
	}
	for _, s := range []string{
		server.JSApiAccountInfo, server.JSApiStreams, server.JSApiStreamList, "$JS.API.STREAM.INFO.S",
		"$JS.API.STREAM.MSG.GET.S", "$JS.API.DIRECT.GET.S", "$JS.API.DIRECT.GET.S.subj",
		"$JS.API.CONSUMER.NAMES.S", "$JS.API.CONSUMER.LIST.S", "$JS.API.CONSUMER.INFO.S.C",
		"$JS.API.CONSUMER.MSG.NEXT.S.C", "$JS.ACK.S.C.1.1.1.1.0", "$JS.FC.S.C.x",
		"$KV.bucket.key", "_INBOX.abc", "orders.new", "anything",
	} {
		if denied(s) {
			t.Errorf("member may not publish %s", s)
		}
	}
}

// TestTrapDenyBeatsNarrowerAllow pins the nats-server rule memberDeny is
// built around: a deny match refuses even a subject an allow list names
// exactly, so "deny the family, allow my own names" cannot be written. If
// this ever fails, members can be given their own consumers by name.
func TestTrapDenyBeatsNarrowerAllow(t *testing.T) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "trap", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		CustomClientAuthentication: registerPerms{&server.Permissions{Publish: &server.SubjectPermission{
			Allow: []string{">", "$JS.API.CONSUMER.CREATE.S.alice"},
			Deny:  []string{"$JS.API.CONSUMER.CREATE.>"},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	var errs asyncErrs
	nc, err := nats.Connect(ns.ClientURL(), nats.NoReconnect(), nats.ErrorHandler(errs.handler))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("$JS.API.CONSUMER.CREATE.S.alice", nil); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	waitFor(t, 5*time.Second, "the exactly allowed subject to be refused by the wider deny", func() bool {
		return errs.has("$JS.API.CONSUMER.CREATE.S.alice")
	})
}

type registerPerms struct{ p *server.Permissions }

func (r registerPerms) Check(c server.ClientAuthentication) bool {
	c.RegisterUser(&server.User{Permissions: r.p})
	return true
}

// A member whose role changes is disconnected by Recheck (nats-server sets
// permissions only when a connection authenticates) and comes back with
// the new role.
func TestRoleChangeClosesConnection(t *testing.T) {
	ca := newTestCA(t)
	m := ca.member(t, "m")
	ks := newKeySet(m)
	roles := &roleSet{}
	cfg := baseConfig(t, "a", ks.has)
	cfg.Role = roles.role
	n := startNode(t, cfg, nil)
	closed := make(chan struct{})
	nc, err := nats.Connect(n.ClientURL(), m.nkeyOpt(), nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := n.Recheck(); got != 0 {
		t.Fatalf("Recheck closed %d connections with nothing changed", got)
	}
	roles.set(m, RoleAdmin)
	if got := n.Recheck(); got != 1 {
		t.Fatalf("Recheck closed %d connections after a role change, want 1", got)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection kept its old role")
	}
	// RoleNone refuses like a non-member.
	roles.set(m, RoleNone)
	if nc, err := nats.Connect(n.ClientURL(), m.nkeyOpt(), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("RoleNone admitted")
	}
}

// The shared account's JetStream limits hold, for admins too. The consumer
// cap is counted per stream by nats-server (jsClusteredConsumerRequest
// counts the consumers of the one stream): pinned here so a change in that
// shows.
func TestJetStreamAccountLimits(t *testing.T) {
	nodes, admin, _, _ := permCluster(t, func(c *Config) {
		c.JetStream.MaxStreams = 2
		c.JetStream.MaxConsumers = 2
	})
	js, err := jetstream.New(dial(t, nodes[0], admin, nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 2 {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: fmt.Sprint("S", i), Subjects: []string{fmt.Sprint("s", i, ".>")}}); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S2", Subjects: []string{"s2.>"}}); !isAPIErr(err, "maximum number of streams") {
		t.Fatalf("third stream: err = %v, want the streams limit", err)
	}
	for i := range 2 {
		if _, err := js.CreateOrUpdateConsumer(ctx, "S0", jetstream.ConsumerConfig{Durable: fmt.Sprint("c", i)}); err != nil {
			t.Fatalf("consumer %d: %v", i, err)
		}
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "S0", jetstream.ConsumerConfig{Durable: "c2"}); !isAPIErr(err, "maximum consumers") {
		t.Fatalf("third consumer: err = %v, want the consumers limit", err)
	}
	// Updating an existing consumer is not a new one.
	if _, err := js.CreateOrUpdateConsumer(ctx, "S0", jetstream.ConsumerConfig{Durable: "c1", Description: "updated"}); err != nil {
		t.Fatalf("update at the cap: %v", err)
	}
	// Limitation: the cap is per stream, so the account may hold
	// MaxStreams × MaxConsumers consumers.
	if _, err := js.CreateOrUpdateConsumer(ctx, "S1", jetstream.ConsumerConfig{Durable: "c0"}); err != nil {
		t.Fatalf("consumer on a second stream: %v (nats-server now counts consumers across the account: update docs)", err)
	}
	// Limits survive a reload (every route change reloads).
	nodes[0].SetMembers(append(members(nodes...), Member{ServerName: "gone", Addr: loopback, RoutePort: freePort(t)}))
	waitFor(t, 5*time.Second, "reload", func() bool { return nodes[0].log.contains("nats routes reloaded") })
	if _, err := js.CreateOrUpdateConsumer(ctx, "S0", jetstream.ConsumerConfig{Durable: "c3"}); !isAPIErr(err, "maximum consumers") {
		t.Fatalf("after a reload: err = %v, want the consumers limit", err)
	}
}

// subjectMatch is NATS subject matching: "*" one token, ">" the rest.
func subjectMatch(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(f) == len(s)
}

func isAPIErr(err error, want string) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), want)
}

// Recheck closes an accepted route whose remote AllowRoute now refuses,
// with no change of the route set (nats-server re-checks accepted routes
// only on a reload; Recheck makes one).
func TestRecheckClosesRefusedAcceptedRoute(t *testing.T) {
	var allowed atomic.Bool
	allowed.Store(true)
	a := baseConfig(t, "a", nil)
	a.Cluster.AllowRoute = func(netip.Addr, *x509.Certificate) bool { return allowed.Load() }
	a.RecheckInterval = time.Hour // only the explicit Recheck below
	b := baseConfig(t, "b", nil)
	ma := Member{ServerName: "a", Addr: loopback, RoutePort: a.Cluster.Port}
	mb := Member{ServerName: "b", Addr: loopback, RoutePort: b.Cluster.Port}
	na := startNode(t, a, []Member{ma}) // a dials no one: b's route is accepted
	nb := startNode(t, b, []Member{ma, mb})
	waitRoutes(t, 1, na, nb)
	// No messages over the route before the refusal: nats-server 2.15's
	// auth violation event (events.go sendAuthErrorEvent, from the reload)
	// reads the route's message counters without the lock its read loop
	// writes them under, which -race reports. The routes being up is what
	// this test needs; forwarding is TestTwoNodeForwarding's.
	waitFor(t, 10*time.Second, "b's route pool to a", func() bool {
		return len(na.Status().Routes) >= server.DEFAULT_ROUTE_POOL_SIZE
	})

	allowed.Store(false)
	refused := na.Status().RoutesRefused
	na.Recheck()
	waitFor(t, 10*time.Second, "a to close b's accepted route", func() bool {
		return routesUp(na) == 0 && na.Status().RoutesRefused > refused
	})
	// b keeps dialling and stays refused.
	time.Sleep(300 * time.Millisecond)
	if up := routesUp(na); up != 0 {
		t.Fatalf("route back after Recheck: %d", up)
	}
}

// TestTrapRemovedRouteURLClosesSolicitedRoute pins what Recheck leaves to
// nats-server: removing a member's URL from the route set closes the route
// this server dialled to it (reload.go routesOption.Apply closes a removed
// URL's connections with no reconnect), even while the remote still allows
// it. Solicited routes are never re-checked against route authentication,
// so this, the remote's own recheck, and removing the WireGuard peer are
// what close them.
func TestTrapRemovedRouteURLClosesSolicitedRoute(t *testing.T) {
	a := baseConfig(t, "a", nil)
	b := baseConfig(t, "b", nil)
	var bAllows atomic.Bool
	bAllows.Store(true)
	b.Cluster.AllowRoute = func(netip.Addr, *x509.Certificate) bool { return bAllows.Load() }
	ma := Member{ServerName: "a", Addr: loopback, RoutePort: a.Cluster.Port}
	mb := Member{ServerName: "b", Addr: loopback, RoutePort: b.Cluster.Port}
	na := startNode(t, a, []Member{ma, mb}) // only a dials
	nb := startNode(t, b, []Member{mb})
	waitRoutes(t, 1, na, nb)
	na.SetMembers([]Member{ma})
	waitRoutes(t, 0, na, nb)
	time.Sleep(300 * time.Millisecond)
	if up := routesUp(na); up != 0 {
		t.Fatalf("a redialled a removed route: %d routes", up)
	}
}

// TestWithDomainAPI: every deny under $JS.API. has its twin under the
// core's domain prefix, and nothing else gains one.
func TestWithDomainAPI(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{"$SYS.>"}, []string{"$SYS.>"}},
		{[]string{"$JS.API.>"}, []string{"$JS.API.>", "$JS.mesh.API.>"}},
		{
			[]string{"$SYS.>", "$JS.API.STREAM.DELETE.*", "$JS.SNAPSHOT.>", "$JS.APIX.>"},
			[]string{"$SYS.>", "$JS.API.STREAM.DELETE.*", "$JS.SNAPSHOT.>", "$JS.APIX.>", "$JS.mesh.API.STREAM.DELETE.*"},
		},
	} {
		if got := withDomainAPI(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("withDomainAPI(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// The lists the roles use.
	phone := phonePermissions(PhoneGrant{Pub: []string{">"}, Sub: []string{">"}})
	for name, list := range map[string][]string{
		"memberDeny": memberDeny, "memberSubDeny": memberSubDeny,
		"phone publish": phone.Publish.Deny, "phone subscribe": phone.Subscribe.Deny,
	} {
		for _, s := range list {
			if rest, ok := strings.CutPrefix(s, "$JS.API."); ok && !slices.Contains(list, domainAPIPrefix+rest) {
				t.Errorf("%s denies %s but not %s", name, s, domainAPIPrefix+rest)
			}
		}
	}
}

// TestMemberCannotWriteRelease: the published update release (the
// buckets and the cue mesh/updater names; its tests check ReleaseSubjects
// against them) is written by admins only; a member still reads it.
func TestMemberCannotWriteRelease(t *testing.T) {
	nodes, admin, alice, _ := permCluster(t, nil)
	ajs, err := jetstream.New(dial(t, nodes[0], admin, nil))
	if err != nil {
		t.Fatal(err)
	}
	var aliceErrs asyncErrs
	mnc := dial(t, nodes[0], alice, &aliceErrs)
	mjs, err := jetstream.New(mnc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := func(d time.Duration) context.Context {
		c, cancel := context.WithTimeout(context.Background(), d)
		t.Cleanup(cancel)
		return c
	}
	akv, err := ajs.CreateKeyValue(ctx(30*time.Second), jetstream.KeyValueConfig{Bucket: "meshnode-update", Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	aobs, err := ajs.CreateObjectStore(ctx(30*time.Second), jetstream.ObjectStoreConfig{Bucket: "meshnode-release", Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := akv.Put(ctx(15*time.Second), "latest", []byte("signed release")); err != nil {
		t.Fatalf("admin KV put: %v", err)
	}
	if _, err := aobs.PutBytes(ctx(15*time.Second), "2/vmlinuz", []byte("kernel")); err != nil {
		t.Fatalf("admin object put: %v", err)
	}

	mkv, err := mjs.KeyValue(ctx(15*time.Second), "meshnode-update")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mkv.Put(ctx(time.Second), "latest", []byte("junk")); err == nil {
		t.Error("member overwrote the published release")
	}
	mobs, err := mjs.ObjectStore(ctx(15*time.Second), "meshnode-release")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mobs.PutBytes(ctx(time.Second), "2/vmlinuz", []byte("junk")); err == nil {
		t.Error("member replaced a release file")
	}
	// Reading is a member's, and the release is the admin's still.
	e, err := mkv.Get(ctx(15*time.Second), "latest")
	if err != nil || string(e.Value()) != "signed release" {
		t.Fatalf("member read of the release: %v %q", err, e)
	}
	info, err := mobs.GetInfo(ctx(15*time.Second), "2/vmlinuz")
	if err != nil || info.Size != uint64(len("kernel")) {
		t.Fatalf("member read of the file's info: %v %+v", err, info)
	}
	// Nor may a member send the cue that has every box read the release.
	mnc.Publish("meshnode.update.v1.released", nil)
	mnc.Flush()
	waitFor(t, 5*time.Second, "the member's cue refused", func() bool { return aliceErrs.has("meshnode.update.v1.released") })
	// Any other bucket stays a member's to write.
	okv, err := ajs.CreateKeyValue(ctx(30*time.Second), jetstream.KeyValueConfig{Bucket: "app", Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	_ = okv
	other, err := mjs.KeyValue(ctx(15*time.Second), "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Put(ctx(15*time.Second), "k", []byte("v")); err != nil {
		t.Errorf("member put into an application bucket: %v", err)
	}
}
