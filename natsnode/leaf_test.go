package natsnode

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshnode/meshnode/identity"
)

// leafMesh is a loopback core/leaf setup: core servers with a leaf-node
// listener that admit leaf connections from the members in allowed, and
// leaf servers of those members.
type leafMesh struct {
	t       *testing.T
	ca      *testCA
	allowed *keySet // identities the core admits (Authorize and AllowLeaf)
}

func newLeafMesh(t *testing.T) *leafMesh {
	return &leafMesh{t: t, ca: newTestCA(t), allowed: newKeySet()}
}

// allowLeaf is AllowLeaf on loopback: the address is every member's, so
// only the certificate's identity decides.
func (lm *leafMesh) allowLeaf(remote netip.Addr, cert *x509.Certificate) bool {
	node, ok := identity.CertNode(cert)
	return ok && remote == loopback && lm.allowed.has(node)
}

// coreConfig is a core server named after m, with a leaf-node listener
// and, when js, JetStream (alone: no other core member).
func (lm *leafMesh) coreConfig(m *member, js bool) Config {
	cfg := baseConfig(lm.t, m.name, lm.allowed.has)
	cfg.Cluster.RouteTLS = m.routeTLS(lm.ca)
	cfg.Leaf = LeafConfig{Host: "127.0.0.1", Port: freePort(lm.t), TLS: m.routeTLS(lm.ca), AllowLeaf: lm.allowLeaf}
	if js {
		withJetStream(lm.t, &cfg, 1)
	}
	return cfg
}

// leafConfig is a leaf server of member m whose own clients are the
// identities in clients.
func (lm *leafMesh) leafConfig(m *member, clients *keySet) Config {
	cfg := baseConfig(lm.t, m.name, clients.has)
	cfg.Cluster = ClusterConfig{}
	seed, err := m.id.NKeyPair().Seed()
	if err != nil {
		lm.t.Fatal(err)
	}
	cfg.Leaf = LeafConfig{Solicit: true, TLS: m.routeTLS(lm.ca), NKeySeed: string(seed)}
	return cfg
}

func leafMember(n *testNode) Member {
	return Member{ServerName: n.name, Addr: loopback, LeafPort: n.cfg.Leaf.Port}
}

func leafIDs(n *testNode) []uint64 {
	var ids []uint64
	for _, l := range n.Status().Leafs {
		ids = append(ids, l.ID)
	}
	return ids
}

func waitLeafs(t *testing.T, n *testNode, want int) {
	t.Helper()
	waitFor(t, 15*time.Second, fmt.Sprintf("%s to hold %d leaf connections", n.name, want), func() bool { return len(n.Status().Leafs) == want })
}

// TestLeafUsesCoreJetStream: a leaf server runs no JetStream and no
// routes; its member clients publish into a stream of the core with acks
// and read it back through the one leaf connection. What the leaf
// connection may do is its member's role: an unrestricted client on the
// leaf box (its own in-process connection, or a malicious box's admin
// client) still cannot delete or create streams, or publish into $SYS,
// on the core.
func TestLeafUsesCoreJetStream(t *testing.T) {
	lm := newLeafMesh(t)
	mCore, mLeaf, mClient := lm.ca.member(t, "core"), lm.ca.member(t, "leaf"), lm.ca.member(t, "client")
	lm.allowed.set(mLeaf, true)
	core := startNode(t, lm.coreConfig(mCore, true), nil)
	leaf := startNode(t, lm.leafConfig(mLeaf, newKeySet(mClient)), []Member{leafMember(core)})
	waitLeafs(t, core, 1)
	waitLeafs(t, leaf, 1)
	if st := leaf.Status(); !st.Leaf || st.RoutesExpected != 0 || len(st.Routes) != 0 || st.JetStream.Enabled || st.LeafExpected != 1 {
		t.Fatalf("leaf status: %+v", st)
	}
	if st := leaf.Status(); st.Leafs[0].Remote != "core" {
		t.Errorf("leaf connected to %q, want core", st.Leafs[0].Remote)
	}

	admin := connectLocal(t, core)
	ajs, _ := jetstream.New(admin)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := ajs.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}

	nc, err := nats.Connect(leaf.ClientURL(), mClient.nkeyOpt(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// Interest in the JetStream API reaches the leaf asynchronously.
	var ack *jetstream.PubAck
	waitFor(t, 10*time.Second, "a JetStream publish from the leaf to be acked", func() bool {
		c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		ack, err = js.Publish(c, "s.1", []byte("from the leaf"))
		return err == nil
	})
	if ack.Stream != "S" {
		t.Fatalf("ack %+v", ack)
	}
	var st jetstream.Stream
	waitFor(t, 10*time.Second, "the JetStream API to answer the leaf's client", func() bool {
		st, err = js.Stream(ctx, "S")
		return err == nil
	})
	msg, err := st.GetMsg(ctx, ack.Sequence)
	if err != nil || string(msg.Data) != "from the leaf" {
		t.Fatalf("read back from the leaf: %v %v", msg, err)
	}

	// The leaf box's own unrestricted client goes through the leaf
	// connection with the leaf member's permissions.
	local := connectLocal(t, leaf)
	for _, subj := range []string{server.JSApiStreamDeleteT, server.JSApiStreamCreateT, server.JSApiStreamPurgeT} {
		subj = fmt.Sprintf(subj, "S")
		req := `{"name":"S","subjects":["s.>"],"storage":"memory"}`
		if strings.Contains(subj, "DELETE") || strings.Contains(subj, "PURGE") {
			req = ""
		}
		if m, err := local.Request(subj, []byte(req), time.Second); err == nil && !strings.Contains(string(m.Data), `"error"`) {
			t.Errorf("%s through the leaf connection answered %s", subj, m.Data)
		}
	}
	if _, err := local.Request("$SYS.REQ.SERVER.PING", nil, time.Second); err == nil {
		t.Errorf("$SYS request through the leaf connection was answered")
	}
	// Nor publish into $SYS of the core's global account.
	sysSub := connectLocal(t, core)
	sysMsgs, err := sysSub.SubscribeSync("$SYS.leaf.test")
	if err != nil {
		t.Fatal(err)
	}
	sysSub.Flush()
	local.Publish("$SYS.leaf.test", []byte("spoof"))
	local.Flush()
	if m, err := sysMsgs.NextMsg(500 * time.Millisecond); err == nil {
		t.Errorf("the leaf box published into $SYS on the core: %s", m.Subject)
	}
	if info, err := ajs.Stream(ctx, "S"); err != nil {
		t.Fatalf("stream gone after the leaf's attempts: %v", err)
	} else if ci := info.CachedInfo(); ci.State.Msgs != 1 {
		t.Errorf("stream holds %d messages, want 1", ci.State.Msgs)
	}
	// Messages flow both ways: core client → leaf client.
	sub, err := nc.SubscribeSync("hello.leaf")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	waitFor(t, 10*time.Second, "a message from the core to reach the leaf's client", func() bool {
		admin.Publish("hello.leaf", []byte("hi"))
		_, err := sub.NextMsg(100 * time.Millisecond)
		return err == nil
	})
}

// TestLeafRevokedIsCutOff: Recheck closes the leaf connection of a
// member that is no longer authorized, and its reconnects are refused.
func TestLeafRevokedIsCutOff(t *testing.T) {
	lm := newLeafMesh(t)
	mCore, mLeaf := lm.ca.member(t, "core"), lm.ca.member(t, "leaf")
	lm.allowed.set(mLeaf, true)
	core := startNode(t, lm.coreConfig(mCore, false), nil)
	leaf := startNode(t, lm.leafConfig(mLeaf, newKeySet()), []Member{leafMember(core)})
	waitLeafs(t, core, 1)
	lm.allowed.set(mLeaf, false)
	if n := core.Recheck(); n != 1 {
		t.Errorf("Recheck closed %d connections, want 1 (the leaf)", n)
	}
	waitLeafs(t, core, 0)
	waitFor(t, 15*time.Second, "the leaf's reconnect to be refused", func() bool { return core.Status().LeafRefused > 0 })
	if got := leafIDs(core); len(got) != 0 {
		t.Errorf("revoked leaf connected again: %v", got)
	}
	_ = leaf
}

// TestLeafRefusedWithAnotherCertificate: the certificate of a leaf
// connection must name the identity its nkey proves: one member's key
// cannot ride on another member's certificate (nor the other way round).
func TestLeafRefusedWithAnotherCertificate(t *testing.T) {
	lm := newLeafMesh(t)
	mCore, mLeaf, mOther := lm.ca.member(t, "core"), lm.ca.member(t, "leaf"), lm.ca.member(t, "other")
	lm.allowed.set(mLeaf, true)
	lm.allowed.set(mOther, true)
	core := startNode(t, lm.coreConfig(mCore, false), nil)
	cfg := lm.leafConfig(mLeaf, newKeySet())
	cfg.Leaf.TLS = mOther.routeTLS(lm.ca) // other's certificate, leaf's nkey
	startNode(t, cfg, []Member{leafMember(core)})
	waitFor(t, 15*time.Second, "the mismatched leaf to be refused", func() bool { return core.Status().LeafRefused > 0 })
	if len(core.Status().Leafs) != 0 {
		t.Fatalf("a leaf with another member's certificate connected")
	}
}

// TestTrapLeafRemoteChangeReconnects pins what SetMembers relies on for a
// leaf server (nats-server 2.15): a remote is known by its URL list, so
// a reload that changes the list removes the remote and adds a new one,
// and the leaf reconnects; a member change that leaves the list as it is
// causes no reload and keeps the connection.
func TestTrapLeafRemoteChangeReconnects(t *testing.T) {
	lm := newLeafMesh(t)
	mA, mB, mLeaf := lm.ca.member(t, "a"), lm.ca.member(t, "b"), lm.ca.member(t, "leaf")
	lm.allowed.set(mLeaf, true)
	a := startNode(t, lm.coreConfig(mA, false), nil)
	b := startNode(t, lm.coreConfig(mB, false), nil)
	leaf := startNode(t, lm.leafConfig(mLeaf, newKeySet()), []Member{leafMember(a)})
	waitLeafs(t, leaf, 1)
	first := leafIDs(leaf)[0]

	// The same core set, told again: nothing changes.
	leaf.SetMembers([]Member{leafMember(a)})
	time.Sleep(10 * leaf.cfg.ReloadDebounce) // a reload would have run by now
	if ids := leafIDs(leaf); len(ids) != 1 || ids[0] != first {
		t.Fatalf("the leaf connection changed without a change of the core set: %v, was %d", ids, first)
	}
	// Another core member: the remote's URL list changes.
	leaf.SetMembers([]Member{leafMember(a), leafMember(b)})
	waitFor(t, 15*time.Second, "the leaf to reconnect after its remote's URL list changed", func() bool {
		ids := leafIDs(leaf)
		return len(ids) == 1 && ids[0] != first
	})
	if st := leaf.Status(); st.LeafExpected != 2 || st.ReloadError != "" {
		t.Errorf("leaf status after the change: %+v", st)
	}
}

// kindRecorder is a CustomClientAuthentication that records the kind of
// every connection it is asked about and refuses them all.
type kindRecorder struct{ leaf atomic.Int32 }

func (k *kindRecorder) Check(c server.ClientAuthentication) bool {
	if c.Kind() == server.LEAF {
		k.leaf.Add(1)
	}
	return false
}

// TestTrapLeafAuthFallsThrough pins the fact leaf authentication rests on
// (nats-server 2.15 auth.go isLeafNodeAuthorized): with no users and no
// nkey in the leaf-node options, an inbound leaf connection is handed to
// CustomClientAuthentication, with Kind() == LEAF. If this fails, leaf
// connections are checked by nats-server's own rules (or not at all) and
// clientAuth's leaf checks are bypassed.
func TestTrapLeafAuthFallsThrough(t *testing.T) {
	rec := &kindRecorder{}
	leafPort := freePort(t)
	hub, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		CustomClientAuthentication: rec,
		LeafNode:                   server.LeafNodeOpts{Host: "127.0.0.1", Port: leafPort},
	})
	if err != nil {
		t.Fatal(err)
	}
	go hub.Start()
	defer hub.Shutdown()
	if !hub.ReadyForConnections(5 * time.Second) {
		t.Fatal("hub not ready")
	}
	u := &url.URL{Scheme: "nats-leaf", Host: fmt.Sprintf("127.0.0.1:%d", leafPort)}
	spoke, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		LeafNode: server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	go spoke.Start()
	defer spoke.Shutdown()
	waitFor(t, 10*time.Second, "a leaf connection to reach CustomClientAuthentication", func() bool { return rec.leaf.Load() > 0 })
	if hub.NumLeafNodes() != 0 {
		t.Errorf("a leaf connection was admitted though the custom check refused it")
	}
}

// TestLeafDoesNotSeeJetStreamAPI: a leaf box that subscribes to the
// JetStream API (plain and under the core's domain prefix) and to
// everything receives neither a core client's nor another leaf's
// client's JetStream API requests, while both are answered (see
// leafSubDeny), whether the box is a member or an admin (whose leaf
// connection has no permissions of ours: nats-server's own deny holds).
// The leaf box's own unrestricted client subscribes, so only what the
// core hands the leaf connection counts; TestLeafCoreEnforcesPermissions
// shows the core holds to it against a leaf that asks for more.
func TestLeafDoesNotSeeJetStreamAPI(t *testing.T) {
	for _, role := range []Role{RoleMember, RoleAdmin} {
		t.Run(role.String(), func(t *testing.T) { testLeafDoesNotSeeJetStreamAPI(t, role) })
	}
}

func testLeafDoesNotSeeJetStreamAPI(t *testing.T, role Role) {
	lm := newLeafMesh(t)
	mCore, mSnoop, mOther, mClient := lm.ca.member(t, "core"), lm.ca.member(t, "snoop"), lm.ca.member(t, "other"), lm.ca.member(t, "client")
	lm.allowed.set(mSnoop, true)
	lm.allowed.set(mOther, true)
	roles := &roleSet{}
	roles.set(mSnoop, role)
	cfg := lm.coreConfig(mCore, true)
	cfg.Role = roles.role
	core := startNode(t, cfg, nil)
	snoop := startNode(t, lm.leafConfig(mSnoop, newKeySet()), []Member{leafMember(core)})
	other := startNode(t, lm.leafConfig(mOther, newKeySet(mClient)), []Member{leafMember(core)})
	waitLeafs(t, core, 2)

	sc := connectLocal(t, snoop)
	var subs []*nats.Subscription
	for _, subj := range []string{">", "$JS.API.>", domainAPIPrefix + ">", "$JS.*.API.>", server.JSAuditAdvisory} {
		sub, err := sc.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	sc.Flush()
	all := subs[0]

	admin := connectLocal(t, core)
	nc, err := nats.Connect(other.ClientURL(), mClient.nkeyOpt(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A plain message from each sender reaching the snoop's ">" shows
	// its interest has reached the core (and through it the path from
	// the other leaf).
	for name, from := range map[string]*nats.Conn{"core": admin, "other leaf": nc} {
		waitFor(t, 10*time.Second, "a plain message from the "+name+" client to reach the leaf box", func() bool {
			from.Publish("probe", nil)
			for {
				m, err := all.NextMsg(100 * time.Millisecond)
				if err != nil {
					return false
				}
				if m.Subject == "probe" {
					return true
				}
			}
		})
	}
	drain := func() {
		for _, sub := range subs {
			for {
				if _, err := sub.NextMsg(0); err != nil {
					break
				}
			}
		}
	}
	drain()

	for name, from := range map[string]*nats.Conn{"core": admin, "other leaf": nc} {
		js, _ := jetstream.New(from)
		waitFor(t, 10*time.Second, "the JetStream API to answer the "+name+" client", func() bool {
			c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			_, err := js.AccountInfo(c)
			return err == nil
		})
		// A plain message after the requests, on the same path: once it
		// has arrived, a request the core let through would have too.
		end := "end." + strings.ReplaceAll(name, " ", "-")
		from.Publish(end, nil)
		from.Flush()
		for {
			m, err := all.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("the end marker from the %s client did not reach the leaf box: %v", name, err)
			}
			if m.Subject == end {
				break
			}
			// Replies (_INBOX.>) and other advisories are open to
			// every member; the requests are not (an admin may read
			// the audit advisory, as an admin client may).
			if isJetStreamAPI(m.Subject) && !(role == RoleAdmin && m.Subject == server.JSAuditAdvisory) {
				t.Errorf("the leaf box received %q from the %s client", m.Subject, name)
			}
		}
		for i, sub := range subs[1:] {
			if role == RoleAdmin && sub.Subject == server.JSAuditAdvisory {
				continue
			}
			if m, err := sub.NextMsg(0); err == nil {
				t.Errorf("the leaf box's subscription %d received %q from the %s client", i+1, m.Subject, name)
			}
		}
	}
}

// isJetStreamAPI reports whether subj is a JetStream API request, under
// the plain or any domain prefix, or the audit advisory that repeats it.
func isJetStreamAPI(subj string) bool {
	t := strings.Split(subj, ".")
	return subj == server.JSAuditAdvisory || len(t) > 2 && t[0] == "$JS" && (t[1] == "API" || t[2] == "API")
}

// TestLeafBootGuard: a leaf-node listener needs AllowLeaf and, beyond
// loopback, mutual TLS; a leaf server runs no cluster and no JetStream
// and needs its nkey seed and TLS toward the core; partial TLS is refused.
func TestLeafBootGuard(t *testing.T) {
	lm := newLeafMesh(t)
	m := lm.ca.member(t, "a")
	seed, _ := m.id.NKeyPair().Seed()
	core := func(c *Config) {
		c.Leaf = LeafConfig{Host: "127.0.0.1", Port: freePort(t), TLS: m.routeTLS(lm.ca), AllowLeaf: lm.allowLeaf}
	}
	leaf := func(c *Config) {
		c.Cluster = ClusterConfig{}
		c.Leaf = LeafConfig{Solicit: true, TLS: m.routeTLS(lm.ca), NKeySeed: string(seed)}
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" = accepted
	}{
		{"core listener", core, ""},
		{"leaf", leaf, ""},
		{"listener without AllowLeaf", func(c *Config) { core(c); c.Leaf.AllowLeaf = nil }, "AllowLeaf"},
		{"listener beyond loopback without TLS", func(c *Config) { core(c); c.Leaf.Host = "fd00::1"; c.Leaf.TLS = nil }, "without mutual TLS"},
		{"listener partial TLS", func(c *Config) { core(c); c.Leaf.TLS.ClientCAs = nil }, "no ClientCAs"},
		{"port out of range", func(c *Config) { core(c); c.Leaf.Port = 70000 }, "out of range"},
		{"leaf with a listener", func(c *Config) { leaf(c); c.Leaf.Port = 7422; c.Leaf.AllowLeaf = lm.allowLeaf }, "does not listen"},
		{"leaf with a cluster", func(c *Config) { leaf(c); c.Cluster = baseConfig(t, "x", nil).Cluster }, "no cluster"},
		{"leaf with JetStream", func(c *Config) { leaf(c); withJetStream(t, c, 1) }, "no JetStream"},
		{"leaf without seed", func(c *Config) { leaf(c); c.Leaf.NKeySeed = "" }, "nkey seed"},
		{"leaf without TLS", func(c *Config) { leaf(c); c.Leaf.TLS = nil }, "mutual TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, "a", nil)
			tc.edit(&cfg)
			_, err := New(cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestLeafURLs: the leaf remote is every distinct core leaf address,
// sorted, whatever the order and duplicates of the members.
func TestLeafURLs(t *testing.T) {
	a, b := netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::1")
	got := urlStrings(leafURLs([]Member{
		{ServerName: "a", Addr: a, LeafPort: 7422},
		{ServerName: "b", Addr: b, LeafPort: 7422},
		{ServerName: "a-again", Addr: a, LeafPort: 7422},
		{ServerName: "no-port", Addr: netip.MustParseAddr("fd00::3")},
		{ServerName: "no-addr", LeafPort: 7422},
	}))
	want := []string{"nats-leaf://[fd00::1]:7422", "nats-leaf://[fd00::2]:7422"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("leafURLs = %v, want %v", got, want)
	}
}

// TestLeafCoreEnforcesPermissions speaks the leaf protocol itself, as a
// malicious box would with a modified server that ignores the
// permissions the core hands it: the core refuses a member leaf's
// publish of a JetStream admin request, plain or under the domain prefix
// the core maps back to the plain API (the stream survives), says so and
// closes the connection, while a plain publish from the same connection
// goes through; and whatever the leaf subscribes to, the core hands it
// no JetStream API request. A leaf that declares itself the hub (making
// the core the spoke of the connection) is held to the same permissions.
func TestLeafCoreEnforcesPermissions(t *testing.T) {
	for _, hub := range []bool{false, true} {
		t.Run(fmt.Sprintf("hub=%v", hub), func(t *testing.T) { testLeafCoreEnforces(t, hub) })
	}
}

// rawLeaf is a leaf connection to a core server spoken by the test.
type rawLeaf struct {
	t    *testing.T
	conn *tls.Conn
	r    *bufio.Reader
	seen strings.Builder // every line the core sent
}

// dialRawLeaf connects to core's leaf listener as m, proving m's nkey
// over the core's nonce, and waits for the core to answer a PING.
func dialRawLeaf(t *testing.T, lm *leafMesh, core *testNode, m *member, hub bool) *rawLeaf {
	t.Helper()
	raw, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", core.cfg.Leaf.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(15 * time.Second))
	r := bufio.NewReader(raw)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("first line %q: %v", line, err)
	}
	var info struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "INFO ")), &info); err != nil || info.Nonce == "" {
		t.Fatalf("INFO %q: %v", line, err)
	}
	conn := tls.Client(raw, m.routeTLS(lm.ca))
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	kp := m.id.NKeyPair()
	pub, _ := kp.PublicKey()
	sig, _ := kp.Sign([]byte(info.Nonce))
	connect, _ := json.Marshal(map[string]any{"nkey": pub, "sig": base64.RawURLEncoding.EncodeToString(sig), "name": "evil", "headers": true, "hub": hub})
	l := &rawLeaf{t: t, conn: conn, r: bufio.NewReader(conn)}
	l.send("CONNECT %s\r\nPING\r\n", connect)
	l.readUntil(0, "PONG", 1)
	return l
}

func (l *rawLeaf) send(format string, args ...any) {
	l.t.Helper()
	if _, err := fmt.Fprintf(l.conn, format, args...); err != nil {
		l.t.Fatal(err)
	}
}

// readUntil reads until the lines since offset from hold want n times,
// and returns them.
func (l *rawLeaf) readUntil(from int, want string, n int) string {
	l.t.Helper()
	for strings.Count(l.seen.String()[from:], want) < n {
		line, err := l.r.ReadString('\n')
		l.seen.WriteString(line)
		if err != nil {
			l.t.Fatalf("waiting for %q: %v; got:\n%s", want, err, l.seen.String()[from:])
		}
	}
	return l.seen.String()[from:]
}

func testLeafCoreEnforces(t *testing.T, hub bool) {
	lm := newLeafMesh(t)
	mCore, mLeaf := lm.ca.member(t, "core"), lm.ca.member(t, "leaf")
	lm.allowed.set(mLeaf, true)
	core := startNode(t, lm.coreConfig(mCore, true), nil)
	admin := connectLocal(t, core)
	ajs, _ := jetstream.New(admin)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := ajs.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	plain, err := admin.SubscribeSync("plain.subject")
	if err != nil {
		t.Fatal(err)
	}
	admin.Flush()

	// The core hands the leaf no JetStream API request, whatever it
	// subscribes to: the core's JetStream request, then a plain message
	// on the same path; once the latter is here, the former would be too.
	l := dialRawLeaf(t, lm, core, mLeaf, hub)
	waitLeafs(t, core, 1)
	mark := l.seen.Len()
	// (A literal subscription the core denies closes the connection;
	// wildcards are filtered on delivery.)
	l.send("LS+ >\r\nLS+ $JS.API.>\r\nLS+ %s>\r\nLS+ $JS.EVENT.ADVISORY.>\r\nPING\r\n", domainAPIPrefix)
	l.readUntil(mark, "PONG", 1) // the core has taken the subscriptions
	if _, err := ajs.AccountInfo(ctx); err != nil {
		t.Fatal(err)
	}
	admin.Publish("end.raw", nil)
	admin.Flush()
	for _, line := range strings.Split(l.readUntil(mark, "LMSG end.raw", 1), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "LMSG" && isJetStreamAPI(f[1]) {
			t.Errorf("the core handed a raw leaf a JetStream API request: %s", line)
		}
	}
	l.conn.Close()
	waitLeafs(t, core, 0)

	for _, subj := range []string{"$JS.API.STREAM.DELETE.S", domainAPIPrefix + "STREAM.DELETE.S"} {
		l := dialRawLeaf(t, lm, core, mLeaf, hub)
		waitLeafs(t, core, 1)
		mark := l.seen.Len()
		l.send("LMSG %s _INBOX.evil 0\r\n\r\nLMSG plain.subject 2\r\nhi\r\nPING\r\n", subj)
		l.readUntil(mark, "Permissions Violation", 1)
		if _, err := plain.NextMsg(5 * time.Second); err != nil {
			t.Errorf("a plain publish from the leaf did not arrive after %s: %v", subj, err)
		}
		if _, err := ajs.Stream(ctx, "S"); err != nil {
			t.Fatalf("the stream is gone after a raw leaf's %s: %v", subj, err)
		}
		waitLeafs(t, core, 0) // the core closes a leaf that violates its permissions
	}
}
