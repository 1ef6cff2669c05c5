package natsnode

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// fakeConn is a route or client connection as an authenticator sees it.
type fakeConn struct {
	kind   int
	opts   server.ClientOpts
	remote net.Addr
	tls    *tls.ConnectionState
}

func (f *fakeConn) GetOpts() *server.ClientOpts                 { return &f.opts }
func (f *fakeConn) GetTLSConnectionState() *tls.ConnectionState { return f.tls }
func (f *fakeConn) RegisterUser(*server.User)                   {}
func (f *fakeConn) RemoteAddress() net.Addr                     { return f.remote }
func (f *fakeConn) GetNonce() []byte                            { return nil }
func (f *fakeConn) Kind() int                                   { return f.kind }
func (f *fakeConn) GetID() uint64                               { return 1 }

func TestRouteAuthLayers(t *testing.T) {
	member := netip.MustParseAddr("fd00::1")
	cfg := baseConfig(t, "a", nil)
	cfg.Cluster.RouteSecret = "right"
	cfg.Logger = slogTo(&logBuf{})
	v4 := netip.MustParseAddr("10.0.0.1")
	var seen *x509.Certificate // what the last AllowRoute call was given
	cfg.Cluster.AllowRoute = func(a netip.Addr, c *x509.Certificate) bool {
		seen = c
		return a == member || a == v4
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	withTLS, err := New(func() Config {
		c := cfg
		ca := newTestCA(t)
		c.Cluster.RouteTLS = ca.member(t, "a").routeTLS(ca)
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "peer"}}
	verified := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}
	addr := func(a netip.Addr) net.Addr { return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 40000)) }
	cases := []struct {
		name string
		s    *Server
		conn fakeConn
		want bool
	}{
		{"member with secret", s, fakeConn{kind: server.ROUTER, opts: server.ClientOpts{Username: RouteUser, Password: "right"}, remote: addr(member)}, true},
		{"wrong password", s, fakeConn{kind: server.ROUTER, opts: server.ClientOpts{Username: RouteUser, Password: "wrong"}, remote: addr(member)}, false},
		{"wrong user", s, fakeConn{kind: server.ROUTER, opts: server.ClientOpts{Username: "other", Password: "right"}, remote: addr(member)}, false},
		{"no credentials", s, fakeConn{kind: server.ROUTER, remote: addr(member)}, false},
		{"non-member address", s, fakeConn{kind: server.ROUTER, opts: server.ClientOpts{Username: RouteUser, Password: "right"}, remote: addr(netip.MustParseAddr("fd00::2"))}, false},
		{"v4-mapped member is unmapped", s, fakeConn{kind: server.ROUTER, opts: server.ClientOpts{Username: RouteUser, Password: "right"}, remote: addr(netip.MustParseAddr("::ffff:10.0.0.1"))}, true},
		{"no address", s, fakeConn{kind: server.ROUTER, opts: server.ClientOpts{Username: RouteUser, Password: "right"}}, false},
		{"not a route", s, fakeConn{kind: server.CLIENT, opts: server.ClientOpts{Username: RouteUser, Password: "right"}, remote: addr(member)}, false},
		{"TLS verified", withTLS, fakeConn{kind: server.ROUTER, opts: server.ClientOpts{Username: RouteUser, Password: "right"}, remote: addr(member), tls: verified}, true},
		{"TLS without verified chain", withTLS, fakeConn{kind: server.ROUTER, opts: server.ClientOpts{Username: RouteUser, Password: "right"}, remote: addr(member), tls: &tls.ConnectionState{}}, false},
		{"TLS with an empty chain", withTLS, fakeConn{kind: server.ROUTER, opts: server.ClientOpts{Username: RouteUser, Password: "right"}, remote: addr(member), tls: &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{}}}}, false},
		{"TLS configured, plain connection", withTLS, fakeConn{kind: server.ROUTER, opts: server.ClientOpts{Username: RouteUser, Password: "right"}, remote: addr(member)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen = nil
			if got := tc.s.routeAuth.Check(&tc.conn); got != tc.want {
				t.Fatalf("Check = %v, want %v", got, tc.want)
			}
			// AllowRoute sees the verified leaf, or nil without route TLS.
			if wantCert := (*x509.Certificate)(nil); tc.want {
				if tc.conn.tls != nil {
					wantCert = leaf
				}
				if seen != wantCert {
					t.Fatalf("AllowRoute got certificate %v, want %v", seen, wantCert)
				}
			}
		})
	}
}

// TestTrapCustomRouterAuthReplacesRoutePassword pins the nats-server
// behaviour routeAuth is built around: with a CustomRouterAuthentication
// set, the cluster username/password is NOT checked by the server. If this
// ever fails, nats-server changed and routeAuth's own secret check is
// merely redundant.
func TestTrapCustomRouterAuthReplacesRoutePassword(t *testing.T) {
	start := func(name string, port int, routes []*url.URL) *server.Server {
		o := &server.Options{
			ServerName: name, Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "trap", Host: "127.0.0.1", Port: port, Username: "meshnode", Password: "right"},
			Routes:  routes,
			// Accepts every route.
			CustomRouterAuthentication: acceptAll{},
		}
		ns, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		t.Cleanup(ns.Shutdown)
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("not ready")
		}
		return ns
	}
	pa := freePort(t)
	a := start("a", pa, nil)
	wrong := &url.URL{Scheme: "nats-route", User: url.UserPassword("meshnode", "WRONG"), Host: fmt.Sprintf("127.0.0.1:%d", pa)}
	b := start("b", freePort(t), []*url.URL{wrong})
	waitFor(t, 10*time.Second, "route with a wrong password to form", func() bool {
		return a.NumRoutes() > 0 && b.NumRoutes() > 0
	})
}

type acceptAll struct{}

func (acceptAll) Check(server.ClientAuthentication) bool { return true }

// TestTrapReloadClosesCustomAuthClients pins the other nats-server
// behaviour clientAuth works around: a ReloadOptions closes every client
// that authenticated through a CustomClientAuthentication with a user name,
// because that user is not in the server's own user table. If this ever
// fails, clearing the CONNECT identity fields in clientAuth is redundant.
func TestTrapReloadClosesCustomAuthClients(t *testing.T) {
	opts := func() *server.Options {
		return &server.Options{
			ServerName: "trap", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
			CustomClientAuthentication: acceptAll{},
		}
	}
	ns, err := server.NewServer(opts())
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	closed := make(chan struct{})
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("someone", "x"), nats.NoReconnect(),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	o := opts()
	o.Port = ns.Addr().(*net.TCPAddr).Port
	o.MaxPayload = 1 << 19 // any change
	if err := ns.ReloadOptions(o); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("reload kept the client: nats-server no longer closes custom-auth users on reload")
	}
}
