package natsnode

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// Defaults the caller may rely on, from mesh/defaults.
const (
	// DefaultBootstrapExpect is the number of members an empty JetStream
	// store waits for before bootstrapping the meta group.
	DefaultBootstrapExpect = defaults.BootstrapExpect
	// DefaultStartTimeout bounds Start when ctx has no earlier deadline.
	DefaultStartTimeout = defaults.NATSStartTimeout
	// DefaultReloadDebounce is how long SetMembers waits for more changes
	// before it reloads the route set.
	DefaultReloadDebounce = defaults.NATSReloadDebounce
	// DefaultRecheckInterval is the safety-net period of Recheck.
	DefaultRecheckInterval = defaults.NATSRecheckInterval
	// RouteUser is the user name of the route secret in route URLs.
	RouteUser = "meshnode"
)

// Config is everything the embedded server needs. Zero durations take the
// defaults above.
type Config struct {
	// ServerName is unique and stable per node (JetStream clustering needs
	// it); the mesh uses the node name.
	ServerName string
	// StoreDir holds JetStream state (a "jetstream" directory inside it).
	StoreDir string
	// Host and ClientPort are the client listener (0 = 4222, -1 = random).
	Host       string
	ClientPort int
	// ClientTLS, when set, makes clients use TLS (identity.ServerTLS).
	ClientTLS *tls.Config
	// Authorize is asked on every client connection with the identity the
	// client proved; false refuses it. Required.
	Authorize func(identity.NodePublic) bool
	// Role is asked for every client Authorize admits, and decides its
	// permissions (see Role and memberDeny). It is asked again whenever
	// the connection is rechecked: a connection whose role changed is
	// closed, because nats-server sets permissions only when a connection
	// authenticates. Nil makes every client a RoleMember.
	Role func(identity.NodePublic) Role
	// PhoneGrant is asked for every client whose Role is RolePhone: the
	// subjects its phone ticket grants. Nil grants phones nothing.
	PhoneGrant func(identity.NodePublic) PhoneGrant

	Cluster   ClusterConfig
	JetStream JetStreamConfig
	// Leaf is the leaf-node listener of a core server, or makes this a
	// leaf server (see LeafConfig).
	Leaf LeafConfig

	Logger *slog.Logger

	StartTimeout    time.Duration
	ReloadDebounce  time.Duration
	RecheckInterval time.Duration
}

// ClusterConfig is the route listener and its security. Port 0 disables
// clustering.
type ClusterConfig struct {
	Name string
	Host string
	Port int
	// Advertise is the overlay address:port other servers reach us on.
	Advertise string
	// RouteSecret is the mesh-wide route password (user RouteUser).
	RouteSecret string
	// RouteTLS is mutual route TLS (identity.RouteTLS).
	RouteTLS *tls.Config
	// AllowRoute is asked for every inbound route connection with the
	// remote address and the certificate the route presented (verified
	// against the mesh CA; nil without RouteTLS); true only for the overlay
	// address of a current member whose identity the certificate names.
	// Required with a cluster.
	AllowRoute func(remote netip.Addr, cert *x509.Certificate) bool
}

// JetStreamConfig turns JetStream on with explicit limits (nats-server
// reads zero as 75% of RAM, so zero is refused here).
type JetStreamConfig struct {
	Enabled         bool
	MaxMemory       int64
	MaxStore        int64
	BootstrapExpect int
	// MaxStreams and MaxConsumers are the account limits of the one
	// account every client shares (0 takes the defaults, -1 is
	// unlimited). nats-server counts MaxConsumers per stream, not across
	// the account (jsClusteredConsumerRequest counts one stream's
	// consumers), and every limit is the account's, shared by all
	// members: see docs/architecture.md for why there are no per-member
	// limits.
	MaxStreams   int
	MaxConsumers int
}

// Account limit defaults: generous for a fleet's own services, small
// enough that a runaway client cannot make thousands of assets.
const (
	DefaultMaxStreams   = 256
	DefaultMaxConsumers = 256
)

func (c *Config) clustered() bool { return c.Cluster.Port != 0 }

// validate is the boot guard; it also fills defaults.
func (c *Config) validate() error {
	if c.ServerName == "" {
		return errors.New("natsnode: server name is required")
	}
	if c.Authorize == nil {
		return errors.New("natsnode: Authorize predicate is required")
	}
	if c.ClientPort < -1 || c.ClientPort > 65535 {
		return fmt.Errorf("natsnode: client port %d out of range", c.ClientPort)
	}
	if c.ClientTLS != nil && len(c.ClientTLS.Certificates) == 0 && c.ClientTLS.GetCertificate == nil {
		return errors.New("natsnode: client TLS has no certificate")
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	if err := c.validateLeaf(); err != nil {
		return err
	}
	js := &c.JetStream
	if js.Enabled {
		if c.StoreDir == "" {
			return errors.New("natsnode: JetStream needs a store directory")
		}
		if js.MaxMemory <= 0 || js.MaxStore <= 0 {
			return fmt.Errorf("natsnode: JetStream needs explicit limits (max memory %d, max store %d)", js.MaxMemory, js.MaxStore)
		}
		if js.BootstrapExpect < 0 {
			return fmt.Errorf("natsnode: bootstrap_expect %d is negative", js.BootstrapExpect)
		}
		if js.BootstrapExpect == 0 {
			js.BootstrapExpect = DefaultBootstrapExpect
		}
		if js.MaxStreams < -1 || js.MaxConsumers < -1 {
			return fmt.Errorf("natsnode: JetStream account limits (max streams %d, max consumers %d) below -1", js.MaxStreams, js.MaxConsumers)
		}
		if js.MaxStreams == 0 {
			js.MaxStreams = DefaultMaxStreams
		}
		if js.MaxConsumers == 0 {
			js.MaxConsumers = DefaultMaxConsumers
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.ReloadDebounce <= 0 {
		c.ReloadDebounce = DefaultReloadDebounce
	}
	if c.RecheckInterval <= 0 {
		c.RecheckInterval = DefaultRecheckInterval
	}
	return nil
}

func (c *Config) validateCluster() error {
	cl := &c.Cluster
	// Partial route TLS is refused even on loopback: it is always a
	// mistake, and a half-configured listener must never come up.
	if cl.RouteTLS != nil {
		if err := checkRouteTLS(cl.RouteTLS); err != nil {
			return err
		}
	}
	if !c.clustered() {
		return nil
	}
	if cl.Port < 0 || cl.Port > 65535 {
		return fmt.Errorf("natsnode: route port %d out of range", cl.Port)
	}
	if cl.Name == "" {
		return errors.New("natsnode: cluster name is required")
	}
	if cl.AllowRoute == nil {
		return errors.New("natsnode: AllowRoute predicate is required with a cluster")
	}
	if cl.Advertise != "" {
		if _, err := netip.ParseAddrPort(cl.Advertise); err != nil {
			return fmt.Errorf("natsnode: cluster advertise %q: want ip:port: %w", cl.Advertise, err)
		}
	}
	if !isLoopbackHost(cl.Host) {
		if cl.RouteSecret == "" {
			return fmt.Errorf("natsnode: cluster listens on %q beyond loopback without a route secret", cl.Host)
		}
		if cl.RouteTLS == nil {
			return fmt.Errorf("natsnode: cluster listens on %q beyond loopback without mutual route TLS", cl.Host)
		}
	}
	return nil
}

// checkRouteTLS refuses anything short of complete mutual route TLS.
func checkRouteTLS(t *tls.Config) error {
	switch {
	case len(t.Certificates) == 0 && t.GetCertificate == nil:
		return errors.New("natsnode: route TLS has no certificate")
	case t.RootCAs == nil:
		return errors.New("natsnode: route TLS has no RootCAs: dialled routes could not be verified")
	case t.ClientCAs == nil:
		return errors.New("natsnode: route TLS has no ClientCAs: inbound routes could not be verified")
	case t.ClientAuth != tls.RequireAndVerifyClientCert:
		return fmt.Errorf("natsnode: route TLS client auth is %v, want RequireAndVerifyClientCert", t.ClientAuth)
	case t.ServerName == "":
		return errors.New("natsnode: route TLS has no fixed ServerName: routes dialled by IP would not verify")
	case t.InsecureSkipVerify:
		return errors.New("natsnode: route TLS skips verification")
	}
	return nil
}

// isLoopbackHost reports whether a listen host binds loopback only. An
// empty or unspecified host binds every interface.
func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
