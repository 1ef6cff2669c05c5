package natsnode

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshnode/meshnode/identity"
)

func TestTwoNodeForwarding(t *testing.T) {
	a := baseConfig(t, "a", nil)
	b := baseConfig(t, "b", nil)
	ms := []Member{
		{ServerName: "a", Addr: loopback, RoutePort: a.Cluster.Port},
		{ServerName: "b", Addr: loopback, RoutePort: b.Cluster.Port},
	}
	na := startNode(t, a, ms)
	nb := startNode(t, b, ms)
	waitRoutes(t, 1, na, nb)
	checkForwarding(t, na, nb)
	checkForwarding(t, nb, na)
	if up, exp := na.Routes(); up != 1 || exp != 1 {
		t.Fatalf("routes = %d/%d, want 1/1", up, exp)
	}
}

func TestThreeNodeForwarding(t *testing.T) {
	cfgs := []Config{baseConfig(t, "a", nil), baseConfig(t, "b", nil), baseConfig(t, "c", nil)}
	var ms []Member
	for _, c := range cfgs {
		ms = append(ms, Member{ServerName: c.ServerName, Addr: loopback, RoutePort: c.Cluster.Port})
	}
	var nodes []*testNode
	for _, c := range cfgs {
		nodes = append(nodes, startNode(t, c, ms))
	}
	waitRoutes(t, 2, nodes...)
	checkForwarding(t, nodes[0], nodes[2])
	checkForwarding(t, nodes[2], nodes[1])
	checkForwarding(t, nodes[1], nodes[0])
}

// Routes over mutual TLS with node certificates from the mesh CA, and a
// TCP client over client TLS authenticated by its nkey.
func TestMutualTLSRouteForwarding(t *testing.T) {
	ca := newTestCA(t)
	ma, mb, client := ca.member(t, "a"), ca.member(t, "b"), ca.member(t, "phone")
	ks := newKeySet(client)
	a := baseConfig(t, "a", ks.has)
	a.Cluster.RouteTLS = ma.routeTLS(ca)
	a.ClientTLS = identity.ServerTLS(ma.cert, ca.ca.Trust)
	b := baseConfig(t, "b", ks.has)
	b.Cluster.RouteTLS = mb.routeTLS(ca)
	ms := []Member{
		{ServerName: "a", Addr: loopback, RoutePort: a.Cluster.Port},
		{ServerName: "b", Addr: loopback, RoutePort: b.Cluster.Port},
	}
	na := startNode(t, a, ms)
	nb := startNode(t, b, ms)
	waitRoutes(t, 1, na, nb)
	checkForwarding(t, na, nb)

	// A remote client over TLS (trusting only the mesh CA) on a, a local
	// subscriber on b.
	// Loopback stands in for a's overlay address (the certificate's IP
	// SAN), so verify a's DNS SAN instead.
	ctls := identity.ClientTLS(ca.ca.Trust, nil)
	ctls.ServerName = "a." + testMeshName
	nc, err := nats.Connect(na.ClientURL(), client.nkeyOpt(), nats.Secure(ctls), nats.NoReconnect())
	if err != nil {
		t.Fatalf("TLS nkey client: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Fatal("client connection is not TLS")
	}
	sub := connectLocal(t, nb)
	s, _ := sub.SubscribeSync("tls.hello")
	sub.Flush()
	waitFor(t, 10*time.Second, "message over TLS client and TLS route", func() bool {
		nc.Publish("tls.hello", []byte("x"))
		_, err := s.NextMsg(50 * time.Millisecond)
		return err == nil
	})
	// Plain TCP is refused on a TLS client port.
	if nc2, err := nats.Connect(na.ClientURL(), client.nkeyOpt(), nats.NoReconnect()); err == nil {
		nc2.Close()
		t.Fatal("plaintext client accepted on a TLS port")
	}
}

// c dials a and b with a wrong route secret. The refusing side's count is
// exact (it refuses before registering a route); the dialler only ever sees
// its attempts rejected.
func TestRouteWrongSecretRefused(t *testing.T) {
	a := baseConfig(t, "a", nil)
	b := baseConfig(t, "b", nil)
	c := baseConfig(t, "c", nil)
	c.Cluster.RouteSecret = "not-the-mesh-secret"
	ms := []Member{
		{ServerName: "a", Addr: loopback, RoutePort: a.Cluster.Port},
		{ServerName: "b", Addr: loopback, RoutePort: b.Cluster.Port},
		{ServerName: "c", Addr: loopback, RoutePort: c.Cluster.Port},
	}
	na, nb := startNode(t, a, ms[:2]), startNode(t, b, ms[:2])
	nc := startNode(t, c, ms)
	waitRoutes(t, 1, na, nb)
	for _, n := range []*testNode{na, nb} {
		waitFor(t, 10*time.Second, n.name+" to refuse c", func() bool { return n.Status().RoutesRefused > 0 })
		if !n.log.contains("wrong route secret") {
			t.Fatalf("%s did not log the wrong secret", n.name)
		}
	}
	waitFor(t, 10*time.Second, "c to be told", func() bool { return nc.log.contains("Authorization Violation") })
	checkForwarding(t, na, nb) // the good pair still works
	for _, n := range []*testNode{na, nb} {
		if up := routesUp(n); up != 1 {
			t.Fatalf("%s has %d routes, want 1 (c refused)", n.name, up)
		}
	}
}

// A route certificate from another CA is refused in both roles: as the
// dialler's client certificate and as the listener's server certificate.
func TestRouteForeignCARefused(t *testing.T) {
	ca, foreign := newTestCA(t), newTestCA(t)
	ma, mb := ca.member(t, "a"), ca.member(t, "b")
	mc := foreign.member(t, "c")
	a, b, c := baseConfig(t, "a", nil), baseConfig(t, "b", nil), baseConfig(t, "c", nil)
	a.Cluster.RouteTLS = ma.routeTLS(ca)
	b.Cluster.RouteTLS = mb.routeTLS(ca)
	// c trusts the mesh CA but presents a foreign certificate.
	c.Cluster.RouteTLS = identity.RouteTLS(mc.cert, ca.ca.Trust)
	ms := []Member{
		{ServerName: "a", Addr: loopback, RoutePort: a.Cluster.Port},
		{ServerName: "b", Addr: loopback, RoutePort: b.Cluster.Port},
		{ServerName: "c", Addr: loopback, RoutePort: c.Cluster.Port},
	}
	na, nb, nc := startNode(t, a, ms), startNode(t, b, ms), startNode(t, c, ms)
	waitRoutes(t, 1, na, nb)
	waitFor(t, 10*time.Second, "a to fail a TLS handshake with c", func() bool {
		return na.log.contains("TLS route handshake error") || na.log.contains("TLS handshake error")
	})
	checkForwarding(t, na, nb)
	if up := routesUp(nc); up != 0 {
		t.Fatalf("c with a foreign certificate has %d routes", up)
	}
	if up := routesUp(na); up != 1 {
		t.Fatalf("a has %d routes, want 1", up)
	}
}

// AllowRoute is asked for every inbound route: a node that does not count
// the dialler as a member refuses it, and accepts it once it does.
func TestRouteNonMemberRefused(t *testing.T) {
	var mu sync.Mutex
	allowed := false
	a := baseConfig(t, "a", nil)
	a.Cluster.AllowRoute = func(remote netip.Addr, _ *x509.Certificate) bool {
		mu.Lock()
		defer mu.Unlock()
		return allowed && remote == loopback
	}
	b := baseConfig(t, "b", nil)
	ma := Member{ServerName: "a", Addr: loopback, RoutePort: a.Cluster.Port}
	mbm := Member{ServerName: "b", Addr: loopback, RoutePort: b.Cluster.Port}
	na := startNode(t, a, []Member{ma}) // a does not know b, so only b dials
	nb := startNode(t, b, []Member{ma, mbm})
	waitFor(t, 10*time.Second, "a to refuse b's route", func() bool { return na.Status().RoutesRefused > 0 })
	if !na.log.contains("not a member address") {
		t.Fatal("a did not log the refusal reason")
	}
	waitFor(t, 10*time.Second, "b to be told", func() bool { return nb.log.contains("Authorization Violation") })
	if up := routesUp(na); up != 0 {
		t.Fatalf("a has %d routes from a non-member", up)
	}
	mu.Lock()
	allowed = true
	mu.Unlock()
	// b keeps retrying its explicit route; now a accepts.
	waitRoutes(t, 1, na, nb)
	checkForwarding(t, nb, na)

	// b stops being a member while its route is up: the next route
	// reload re-runs route authorization and closes it.
	mu.Lock()
	allowed = false
	mu.Unlock()
	refused := na.Status().RoutesRefused
	na.SetMembers([]Member{ma, {ServerName: "gone", Addr: loopback, RoutePort: freePort(t)}})
	waitRoutes(t, 0, na)
	waitFor(t, 10*time.Second, "a to refuse b again", func() bool { return na.Status().RoutesRefused > refused })
	if up := routesUp(na); up != 0 {
		t.Fatalf("a has %d routes after b left", up)
	}
}

func TestRoutesAddedAndRemovedLive(t *testing.T) {
	// Every node's AllowRoute follows its own member set, as mesh.Node's
	// does.
	type live struct {
		mu sync.Mutex
		ms []Member
	}
	cfgs := []Config{baseConfig(t, "a", nil), baseConfig(t, "b", nil), baseConfig(t, "c", nil)}
	lives := make([]*live, len(cfgs))
	for i := range cfgs {
		l := &live{}
		lives[i] = l
		cfgs[i].Cluster.AllowRoute = func(netip.Addr, *x509.Certificate) bool {
			// Loopback tests cannot tell members apart by address: a node
			// allows routes while it knows any other member.
			l.mu.Lock()
			defer l.mu.Unlock()
			return len(l.ms) > 1
		}
	}
	all := make([]Member, len(cfgs))
	for i, c := range cfgs {
		all[i] = Member{ServerName: c.ServerName, Addr: loopback, RoutePort: c.Cluster.Port}
	}
	set := func(n *testNode, l *live, ms []Member) {
		l.mu.Lock()
		l.ms = ms
		l.mu.Unlock()
		n.SetMembers(ms)
		n.Recheck()
	}
	var nodes []*testNode
	for i, c := range cfgs {
		n := startNode(t, c, nil) // alone
		nodes = append(nodes, n)
		set(n, lives[i], all[i:i+1])
	}
	for _, n := range nodes {
		if up, exp := n.Routes(); up != 0 || exp != 0 {
			t.Fatalf("%s alone: routes %d/%d", n.name, up, exp)
		}
	}
	// Everyone learns everyone: routes come up with no restart.
	for i, n := range nodes {
		set(n, lives[i], all)
	}
	waitRoutes(t, 2, nodes...)
	if _, exp := nodes[0].Routes(); exp != 2 {
		t.Fatalf("expected routes = %d, want 2", exp)
	}
	checkForwarding(t, nodes[0], nodes[2])

	// c leaves: a and b drop it, c drops them.
	set(nodes[0], lives[0], all[:2])
	set(nodes[1], lives[1], all[:2])
	set(nodes[2], lives[2], all[2:])
	waitRoutes(t, 1, nodes[0], nodes[1])
	waitRoutes(t, 0, nodes[2])
	checkForwarding(t, nodes[1], nodes[0])
	if up := routesUp(nodes[2]); up != 0 {
		t.Fatalf("c still has %d routes", up)
	}
	if !strings.Contains(nodes[0].log.String(), "nats routes reloaded") {
		t.Fatal("no reload logged")
	}
}

func TestClientAuth(t *testing.T) {
	ca := newTestCA(t)
	m1, m2, stranger := ca.member(t, "m1"), ca.member(t, "m2"), ca.member(t, "stranger")
	ks := newKeySet(m1, m2)
	cfg := baseConfig(t, "a", ks.has)
	cfg.RecheckInterval = 300 * time.Millisecond
	n := startNode(t, cfg, nil)

	connect := func(m *member, extra ...nats.Option) (*nats.Conn, chan struct{}, error) {
		closed := make(chan struct{})
		opts := append([]nats.Option{m.nkeyOpt(), nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) })}, extra...)
		nc, err := nats.Connect(n.ClientURL(), opts...)
		return nc, closed, err
	}
	isAuthErr := func(err error) bool {
		return err != nil && (errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization"))
	}

	// A member's nkey is accepted and can talk.
	c1, closed1, err := connect(m1)
	if err != nil {
		t.Fatalf("member refused: %v", err)
	}
	defer c1.Close()
	if _, err := c1.Request("nothing.here", nil, 200*time.Millisecond); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("member connection not usable: %v", err)
	}

	// An unknown nkey is refused.
	if nc, _, err := connect(stranger); !isAuthErr(err) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("unknown nkey: err = %v, want authorization violation", err)
	}
	// No credentials, or user/password, are refused.
	if nc, err := nats.Connect(n.ClientURL(), nats.NoReconnect()); !isAuthErr(err) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("anonymous: err = %v", err)
	}
	// The internal users only work in process, even with the password.
	for user, pass := range map[string]string{localUser: n.localPass, systemUser: n.systemPass} {
		if nc, err := nats.Connect(n.ClientURL(), nats.UserInfo(user, pass), nats.NoReconnect()); !isAuthErr(err) {
			if nc != nil {
				nc.Close()
			}
			t.Fatalf("internal user %s over TCP: err = %v", user, err)
		}
	}
	// A signature by another key over the nonce is refused.
	forged := nats.Nkey(m1.id.Public().NKey(), stranger.id.NKeyPair().Sign)
	if nc, err := nats.Connect(n.ClientURL(), forged, nats.NoReconnect()); !isAuthErr(err) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("forged signature: err = %v", err)
	}

	// Revocation: Recheck closes the open connection and the next
	// connect is refused.
	ks.set(m1, false)
	if got := n.Recheck(); got != 1 {
		t.Fatalf("Recheck closed %d connections, want 1", got)
	}
	select {
	case <-closed1:
	case <-time.After(5 * time.Second):
		t.Fatal("revoked member's connection still open")
	}
	if nc, _, err := connect(m1); !isAuthErr(err) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("revoked member reconnect: err = %v", err)
	}

	// Safety net: a revocation the caller forgets to announce is still
	// enforced by the ticker.
	c2, closed2, err := connect(m2)
	if err != nil {
		t.Fatalf("m2 refused: %v", err)
	}
	defer c2.Close()
	ks.set(m2, false)
	select {
	case <-closed2:
	case <-time.After(5 * time.Second):
		t.Fatal("safety-net recheck did not close the revoked connection")
	}

	// In-process connections are unaffected.
	local := connectLocal(t, n)
	if err := local.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestStartErrors(t *testing.T) {
	t.Run("route port in use", func(t *testing.T) {
		a := baseConfig(t, "a", nil)
		startNode(t, a, nil)
		b := baseConfig(t, "b", nil)
		b.Cluster.Port = a.Cluster.Port
		b.Cluster.Advertise = a.Cluster.Advertise
		b.Logger = slogTo(&logBuf{})
		s, err := New(b)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Shutdown()
		err = s.Start(t.Context())
		if err == nil || !strings.Contains(err.Error(), "failed to start") {
			t.Fatalf("Start = %v, want a start failure", err)
		}
	})
	t.Run("JetStream store is a file", func(t *testing.T) {
		a := baseConfig(t, "a", nil)
		withJetStream(t, &a, 1)
		a.StoreDir = t.TempDir() + "/file"
		if err := writeFile(a.StoreDir); err != nil {
			t.Fatal(err)
		}
		a.Logger = slogTo(&logBuf{})
		s, err := New(a)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Shutdown()
		err = s.Start(t.Context())
		if err == nil || !strings.Contains(err.Error(), "JetStream") {
			t.Fatalf("Start = %v, want a JetStream start failure", err)
		}
	})
	t.Run("twice", func(t *testing.T) {
		n := startNode(t, baseConfig(t, "a", nil), nil)
		if err := n.Start(t.Context()); err == nil {
			t.Fatal("second Start succeeded")
		}
	})
}

func TestRouteURLsCanonical(t *testing.T) {
	v6 := netip.MustParseAddr("fd12:3456:789a::1")
	ms := []Member{
		{ServerName: "b", Addr: netip.MustParseAddr("10.0.0.2"), RoutePort: 6222},
		{ServerName: "v6", Addr: v6, RoutePort: 6222},
		{ServerName: "a", Addr: netip.MustParseAddr("10.0.0.1"), RoutePort: 6222},
		{ServerName: "a-again", Addr: netip.MustParseAddr("::ffff:10.0.0.1"), RoutePort: 6222},
		{ServerName: "bad", RoutePort: 6222},
		{ServerName: "noport", Addr: v6},
	}
	got := urlStrings(routeURLs(ms, "p@ss/w:rd"))
	want := []string{
		"nats-route://meshnode:p%40ss%2Fw%3Ard@10.0.0.1:6222",
		"nats-route://meshnode:p%40ss%2Fw%3Ard@10.0.0.2:6222",
		"nats-route://meshnode:p%40ss%2Fw%3Ard@[fd12:3456:789a::1]:6222",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("routeURLs =\n%v\nwant\n%v", got, want)
	}
	// Order of input does not matter.
	rev := []Member{ms[2], ms[1], ms[0]}
	if fmt.Sprint(urlStrings(routeURLs(rev, "p@ss/w:rd"))) != fmt.Sprint(want) {
		t.Fatal("routeURLs depends on input order")
	}
	// The secret survives the URL round trip.
	u := routeURLs(ms[:1], "p@ss/w:rd")[0]
	if p, _ := u.User.Password(); p != "p@ss/w:rd" || u.User.Username() != RouteUser {
		t.Fatalf("user info = %v", u.User)
	}
	if got := urlStrings(routeURLs(ms[:1], "")); got[0] != "nats-route://10.0.0.2:6222" {
		t.Fatalf("no secret: %v", got)
	}
}

func TestLoggerRedactsSecretAndRecordsFatal(t *testing.T) {
	lb := &logBuf{}
	l := newServerLogger(slogTo(lb), "p@ss/w:rd")
	u := routeURLs([]Member{{Addr: loopback, RoutePort: 1}}, "p@ss/w:rd")[0]
	l.Noticef("Removed route %v", u)
	l.Errorf("raw %s", "p@ss/w:rd")
	if strings.Contains(lb.String(), "p@ss") || strings.Contains(lb.String(), "p%40ss") {
		t.Fatalf("secret in log: %s", lb.String())
	}
	if l.fatalMsg() != "" {
		t.Fatal("fatal before Fatalf")
	}
	l.Fatalf("boom %d", 1)
	l.Fatalf("second")
	if l.fatalMsg() != "boom 1" {
		t.Fatalf("fatal = %q", l.fatalMsg())
	}
}

func TestSecretEqual(t *testing.T) {
	if !secretEqual("abc", "abc") || secretEqual("abc", "abd") || secretEqual("abc", "abcd") || secretEqual("", "x") {
		t.Fatal("secretEqual wrong")
	}
}

var _ = identity.NodePublic{}
