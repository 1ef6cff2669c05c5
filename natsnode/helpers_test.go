package natsnode

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/identity/identitytest"
	"github.com/meshnode/meshnode/mesh/meshtest"
)

const testMeshName = "testmesh"

var loopback = netip.MustParseAddr("127.0.0.1")

// freePort picks a free loopback TCP port for a server to bind later.
// Not one the kernel hands out as an ephemeral port: between the check
// here and the server's bind, a route dialled by another test's server
// could take such a port as its source (seen in CI: "bind: address
// already in use"). Below the ephemeral range only an explicit bind can
// take it, and this process walks its own sequence of them.
func freePort(t *testing.T) int {
	t.Helper()
	lo := ephemeralLow()
	const base = 10000
	if lo-base >= 2000 {
		span := lo - base
		for range span {
			p := base + int(nextPort.Add(1))%span
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				continue
			}
			l.Close()
			return p
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// nextPort starts at a place of its own per process, so that two test
// processes rarely walk the same ports.
var nextPort atomic.Int64

func init() { nextPort.Store(int64(os.Getpid()) * 7919) }

// ephemeralLow is the lowest port the kernel picks for outgoing
// connections (32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return lo
}

// logBuf collects one server's log; it is printed when the test fails.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuf) contains(s string) bool { return strings.Contains(b.String(), s) }

// testCA is a mesh CA with helpers to mint member identities.
type testCA struct {
	ca *identity.CA
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	return &testCA{ca: identitytest.NewMesh(t, testMeshName).CA}
}

type member struct {
	name string
	id   *identity.Identity
	cert tls.Certificate
}

func (c *testCA) member(t *testing.T, name string) *member {
	t.Helper()
	id := identitytest.NewIdentity(t)
	nc, err := c.ca.IssueNodeCert(name, id.Public(), time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := id.TLSCertificate(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &member{name: name, id: id, cert: tc}
}

func (m *member) routeTLS(c *testCA) *tls.Config { return identity.RouteTLS(m.cert, c.ca.Trust) }

// nkeyOpt authenticates a nats client as m.
func (m *member) nkeyOpt() nats.Option {
	kp := m.id.NKeyPair()
	pub, _ := kp.PublicKey()
	return nats.Nkey(pub, kp.Sign)
}

// allowAll / membership sets for predicates.
type keySet struct {
	mu   sync.Mutex
	keys map[identity.NodePublic]bool
}

func newKeySet(ms ...*member) *keySet {
	k := &keySet{keys: map[identity.NodePublic]bool{}}
	for _, m := range ms {
		k.keys[m.id.Public()] = true
	}
	return k
}

func (k *keySet) set(m *member, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[m.id.Public()] = ok
}

func (k *keySet) has(n identity.NodePublic) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys[n]
}

func allowAllRoutes(netip.Addr, *x509.Certificate) bool { return true }

// testNode is one started server in a test cluster.
type testNode struct {
	*Server
	name string
	port int // route port
	log  *logBuf
	cfg  Config
}

func (n *testNode) member() Member {
	return Member{ServerName: n.name, Addr: loopback, RoutePort: n.port}
}

// baseConfig is a loopback cluster config with fast timers.
func baseConfig(t *testing.T, name string, authorize func(identity.NodePublic) bool) Config {
	t.Helper()
	if authorize == nil {
		authorize = func(identity.NodePublic) bool { return false }
	}
	port := freePort(t)
	return Config{
		ServerName: name,
		Host:       "127.0.0.1",
		ClientPort: -1,
		Authorize:  authorize,
		Cluster: ClusterConfig{
			Name:        "test",
			Host:        "127.0.0.1",
			Port:        port,
			Advertise:   fmt.Sprintf("127.0.0.1:%d", port),
			RouteSecret: "s3cret/route+secret",
			AllowRoute:  allowAllRoutes,
		},
		ReloadDebounce:  20 * time.Millisecond,
		RecheckInterval: 200 * time.Millisecond,
	}
}

func withJetStream(t *testing.T, cfg *Config, expect int) {
	cfg.StoreDir = t.TempDir()
	cfg.JetStream = JetStreamConfig{Enabled: true, MaxMemory: 64 << 20, MaxStore: 256 << 20, BootstrapExpect: expect}
}

// startNode starts a server from cfg with the given members and registers
// its shutdown.
func startNode(t *testing.T, cfg Config, members []Member) *testNode {
	t.Helper()
	lb := &logBuf{}
	cfg.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.ServerName, err)
	}
	s.SetMembers(members)
	n := &testNode{Server: s, name: cfg.ServerName, port: cfg.Cluster.Port, log: lb, cfg: cfg}
	t.Cleanup(func() {
		s.Shutdown()
		if t.Failed() {
			out := lb.String()
			if len(out) > 8000 {
				out = "…" + out[len(out)-8000:]
			}
			t.Logf("log of %s:\n%s", cfg.ServerName, out)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start(%s): %v", cfg.ServerName, err)
	}
	return n
}

func members(nodes ...*testNode) []Member {
	var ms []Member
	for _, n := range nodes {
		ms = append(ms, n.member())
	}
	return ms
}

// waitFor polls cond with a deadline (meshtest.WaitFor).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	meshtest.WaitFor(t, timeout, what, cond)
}

func routesUp(n *testNode) int {
	up, _ := n.Routes()
	return up
}

// waitRoutes waits until every node routes to want others.
func waitRoutes(t *testing.T, want int, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, 15*time.Second, fmt.Sprintf("%s to have %d routes", n.name, want), func() bool { return routesUp(n) == want })
	}
}

// connectLocal is an in-process client that fails the test on error.
func connectLocal(t *testing.T, n *testNode) *nats.Conn {
	t.Helper()
	nc, err := n.ConnectInProcess(nats.NoReconnect())
	if err != nil {
		t.Fatalf("in-process connect to %s: %v", n.name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// checkForwarding proves a message published on one server reaches a
// subscriber on another (which needs a working route).
func checkForwarding(t *testing.T, from, to *testNode) {
	t.Helper()
	sub := connectLocal(t, to)
	pub := connectLocal(t, from)
	subject := fmt.Sprintf("fwd.%s.%s", from.name, to.name)
	s, err := sub.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	// Interest propagates over the route asynchronously: publish until it
	// arrives.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := pub.Publish(subject, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		m, err := s.NextMsg(100 * time.Millisecond)
		if err == nil {
			if string(m.Data) != "hello" {
				t.Fatalf("got %q", m.Data)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message from %s reached %s", from.name, to.name)
		}
	}
}

func slogTo(w *logBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func writeFile(path string) error { return os.WriteFile(path, []byte("not a directory"), 0o600) }
