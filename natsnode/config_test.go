package natsnode

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/identity"
)

// TestBootGuard runs every combination of listen host, route secret and
// route TLS shape through New: a cluster beyond loopback needs a secret
// AND complete mutual TLS; partial TLS is refused everywhere.
func TestBootGuard(t *testing.T) {
	ca := newTestCA(t)
	m := ca.member(t, "a")
	complete := func() *tls.Config { return identity.RouteTLS(m.cert, ca.ca.Trust) }
	tlsShapes := []struct {
		name    string
		cfg     func() *tls.Config
		partial string // error fragment when partial
	}{
		{"no TLS", func() *tls.Config { return nil }, ""},
		{"complete", complete, ""},
		{"no certificate", func() *tls.Config { c := complete(); c.Certificates = nil; return c }, "no certificate"},
		{"no RootCAs", func() *tls.Config { c := complete(); c.RootCAs = nil; return c }, "no RootCAs"},
		{"no ClientCAs", func() *tls.Config { c := complete(); c.ClientCAs = nil; return c }, "no ClientCAs"},
		{"client cert optional", func() *tls.Config { c := complete(); c.ClientAuth = tls.VerifyClientCertIfGiven; return c }, "RequireAndVerifyClientCert"},
		{"no client auth", func() *tls.Config { c := complete(); c.ClientAuth = tls.NoClientCert; return c }, "RequireAndVerifyClientCert"},
		{"no ServerName", func() *tls.Config { c := complete(); c.ServerName = ""; return c }, "ServerName"},
		{"skip verify", func() *tls.Config { c := complete(); c.InsecureSkipVerify = true; return c }, "skips verification"},
		{"certificate only", func() *tls.Config { return &tls.Config{Certificates: []tls.Certificate{m.cert}} }, "no RootCAs"},
		{"CAs only", func() *tls.Config {
			return &tls.Config{RootCAs: ca.ca.Trust.Pool(), ClientCAs: ca.ca.Trust.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, ServerName: "x"}
		}, "no certificate"},
	}
	hosts := []struct {
		host     string
		loopback bool
	}{
		{"127.0.0.1", true}, {"::1", true}, {"localhost", true},
		{"", false}, {"0.0.0.0", false}, {"::", false}, {"10.1.2.3", false}, {"fd00::1", false}, {"node.example", false},
	}
	for _, h := range hosts {
		for _, secret := range []string{"", "route-secret"} {
			for _, shape := range tlsShapes {
				name := fmt.Sprintf("host=%q/secret=%v/tls=%s", h.host, secret != "", shape.name)
				t.Run(name, func(t *testing.T) {
					cfg := baseConfig(t, "a", nil)
					cfg.Cluster.Host = h.host
					cfg.Cluster.RouteSecret = secret
					cfg.Cluster.RouteTLS = shape.cfg()
					_, err := New(cfg)
					var want string // "" = accepted
					switch {
					case shape.partial != "":
						want = shape.partial
					case !h.loopback && secret == "":
						want = "without a route secret"
					case !h.loopback && shape.cfg() == nil:
						want = "without mutual route TLS"
					}
					if want == "" {
						if err != nil {
							t.Fatalf("refused: %v", err)
						}
						return
					}
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("err = %v, want one containing %q", err, want)
					}
				})
			}
		}
	}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no server name", func(c *Config) { c.ServerName = "" }, "server name"},
		{"no Authorize", func(c *Config) { c.Authorize = nil }, "Authorize"},
		{"client port", func(c *Config) { c.ClientPort = 70000 }, "client port"},
		{"route port", func(c *Config) { c.Cluster.Port = -5 }, "route port"},
		{"no cluster name", func(c *Config) { c.Cluster.Name = "" }, "cluster name"},
		{"no AllowRoute", func(c *Config) { c.Cluster.AllowRoute = nil }, "AllowRoute"},
		{"bad advertise", func(c *Config) { c.Cluster.Advertise = "node:6222" }, "advertise"},
		{"client TLS without cert", func(c *Config) { c.ClientTLS = &tls.Config{} }, "client TLS"},
		{"JetStream without store", func(c *Config) {
			c.JetStream = JetStreamConfig{Enabled: true, MaxMemory: 1, MaxStore: 1}
		}, "store directory"},
		{"JetStream without limits", func(c *Config) {
			c.StoreDir = "/x"
			c.JetStream = JetStreamConfig{Enabled: true, MaxStore: 1}
		}, "explicit limits"},
		{"negative bootstrap_expect", func(c *Config) {
			c.StoreDir = "/x"
			c.JetStream = JetStreamConfig{Enabled: true, MaxMemory: 1, MaxStore: 1, BootstrapExpect: -1}
		}, "bootstrap_expect"},
		{"JetStream account limits below -1", func(c *Config) {
			c.StoreDir = "/x"
			c.JetStream = JetStreamConfig{Enabled: true, MaxMemory: 1, MaxStore: 1, MaxConsumers: -2}
		}, "account limits"},
		{"partial TLS without a cluster", func(c *Config) {
			c.Cluster = ClusterConfig{RouteTLS: &tls.Config{}}
		}, "route TLS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, "a", nil)
			tc.mutate(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Defaults are filled in.
	cfg := baseConfig(t, "a", nil)
	cfg.StoreDir = "/x"
	cfg.JetStream = JetStreamConfig{Enabled: true, MaxMemory: 1, MaxStore: 1}
	cfg.ReloadDebounce, cfg.RecheckInterval = 0, 0
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.JetStream.BootstrapExpect != DefaultBootstrapExpect || s.cfg.ReloadDebounce != DefaultReloadDebounce ||
		s.cfg.RecheckInterval != DefaultRecheckInterval || s.cfg.StartTimeout != DefaultStartTimeout || s.cfg.Logger == nil ||
		s.cfg.JetStream.MaxStreams != DefaultMaxStreams || s.cfg.JetStream.MaxConsumers != DefaultMaxConsumers {
		t.Fatalf("defaults not filled: %+v", s.cfg)
	}
	// No cluster: no route checks at all.
	cfg = baseConfig(t, "a", nil)
	cfg.Cluster = ClusterConfig{}
	if _, err := New(cfg); err != nil {
		t.Fatalf("standalone server refused: %v", err)
	}
}
