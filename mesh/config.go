package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// Config is how a node runs. Zero fields take the values of mesh/defaults;
// the file <state>/meshnode.toml sets any of them and command-line flags win
// over it.
type Config struct {
	StateDir identity.StateDir `toml:"-"`

	Interface  string `toml:"interface,omitempty,omitzero"`
	ListenPort int    `toml:"listen_port,omitempty,omitzero"`
	MTU        int    `toml:"mtu,omitempty,omitzero"`
	// Endpoints are the underlay host:port pairs other members dial for
	// WireGuard. Empty means every global unicast address of this box at
	// ListenPort.
	Endpoints []string `toml:"endpoints,omitempty,omitzero"`
	// EnrollAddr is where the enrollment endpoint listens (underlay TCP).
	EnrollAddr     string `toml:"enroll_addr,omitempty,omitzero"`
	GossipPort     int    `toml:"gossip_port,omitempty,omitzero"`
	NATSClientPort int    `toml:"nats_client_port,omitempty,omitzero"`
	NATSRoutePort  int    `toml:"nats_route_port,omitempty,omitzero"`
	// NATSLeafPort is a core member's leaf-node listener, and where a
	// leaf member dials every core member: the same on every member.
	NATSLeafPort    int `toml:"nats_leaf_port,omitempty,omitzero"`
	BootstrapExpect int `toml:"bootstrap_expect,omitempty,omitzero"`
	// MaxCore is the mesh's maximum of core members (NATS route cluster
	// and JetStream meta group; the others are leaf nodes): set by
	// `meshnode init --max-core`, adopted by joiners, and used by every
	// admin when it admits (discovery/enroll grants the core role while
	// fewer hold it). It also bounds bootstrap_expect in a core mesh:
	// only core members count.
	MaxCore int `toml:"max_core,omitempty,omitzero"`
	// JetStream limits; zero would mean "75% of RAM" to nats-server, so
	// the defaults are explicit and small, fit for an edge box.
	JetStreamMaxMemory int64  `toml:"jetstream_max_memory,omitempty,omitzero"`
	JetStreamMaxStore  int64  `toml:"jetstream_max_store,omitempty,omitzero"`
	LogLevel           string `toml:"log_level,omitempty,omitzero"`
	// MemberValidity is the mesh's lifetime of tickets and node
	// certificates: set by `meshnode init --member-validity`, adopted by
	// joiners from the join answer, and used by admins for every ticket
	// they issue or renew. Members renew at two thirds of it.
	MemberValidity time.Duration `toml:"member_validity,omitempty,omitzero"`
	// NeverSeenTimeout is how long a member admitted through the
	// enrollment endpoint stays in the member table (and a WireGuard peer)
	// without gossip ever seeing it alive.
	NeverSeenTimeout time.Duration `toml:"never_seen_timeout,omitempty,omitzero"`

	// MetricsAddr, when set, is a TCP address (e.g. 127.0.0.1:9101 or
	// [overlay]:9101) where GET /metrics serves the Prometheus text; the
	// local API socket serves it always.
	MetricsAddr string `toml:"metrics_addr,omitempty,omitzero"`
	// MetricsPerPeer adds per-peer WireGuard series (a series per member:
	// off by default, since a large mesh would export N² series).
	MetricsPerPeer bool `toml:"metrics_per_peer,omitempty,omitzero"`

	// FastTimers shortens gossip timers (tests and the demo).
	FastTimers bool `toml:"fast_timers,omitempty,omitzero"`
	// LabEndpoints lets members advertise loopback, link-local and other
	// internal endpoints (discovery.CheckDialable), for a lab mesh on one
	// host. A node that admits members hands it to newcomers.
	LabEndpoints bool `toml:"lab_endpoints,omitempty,omitzero"`

	// RelayOnly reaches every member that is not a hub through a hub,
	// never directly; NoRelay never relays (path.go). Both are for tests
	// and odd networks: by default a member is tried directly and relayed
	// when that fails.
	RelayOnly bool `toml:"relay_only,omitempty,omitzero"`
	NoRelay   bool `toml:"no_relay,omitempty,omitzero"`
}

// pathMode is the path machine's mode for these settings.
func (c Config) pathMode() PathMode {
	switch {
	case c.RelayOnly:
		return PathRelayOnly
	case c.NoRelay:
		return PathNoRelay
	}
	return PathAuto
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.StateDir == "" {
		c.StateDir = defaults.StateDir
	}
	if c.Interface == "" {
		c.Interface = defaults.Interface
	}
	if c.ListenPort == 0 {
		c.ListenPort = defaults.ListenPort
	}
	if c.MTU == 0 {
		c.MTU = defaults.MTU
	}
	if c.EnrollAddr == "" {
		c.EnrollAddr = ":" + strconv.Itoa(defaults.EnrollPort)
	}
	if c.GossipPort == 0 {
		c.GossipPort = defaults.GossipPort
	}
	if c.NATSClientPort == 0 {
		c.NATSClientPort = defaults.NATSClientPort
	}
	if c.NATSRoutePort == 0 {
		c.NATSRoutePort = defaults.NATSRoutePort
	}
	if c.NATSLeafPort == 0 {
		c.NATSLeafPort = defaults.NATSLeafPort
	}
	if c.BootstrapExpect == 0 {
		c.BootstrapExpect = defaults.BootstrapExpect
	}
	if c.MaxCore == 0 {
		c.MaxCore = defaults.MaxCore
	}
	if c.JetStreamMaxMemory == 0 {
		c.JetStreamMaxMemory = defaults.JetStreamMaxMemory
	}
	if c.JetStreamMaxStore == 0 {
		c.JetStreamMaxStore = defaults.JetStreamMaxStore
	}
	if c.LogLevel == "" {
		c.LogLevel = defaults.LogLevel
	}
	if c.MemberValidity == 0 {
		c.MemberValidity = defaults.MemberValidity
	}
	if c.NeverSeenTimeout == 0 {
		c.NeverSeenTimeout = defaults.NeverSeenTimeout
	}
	return c
}

// DefaultConfig is what every zero field falls back to: the values of
// mesh/defaults as a Config, for flag help and comparisons.
func DefaultConfig() Config { return Config{}.withDefaults() }

// Validate reports the first bad setting, naming it.
func (c Config) Validate() error {
	for _, p := range []struct {
		name string
		v    int
	}{{"listen_port", c.ListenPort}, {"gossip_port", c.GossipPort}, {"nats_client_port", c.NATSClientPort}, {"nats_route_port", c.NATSRoutePort}, {"nats_leaf_port", c.NATSLeafPort}} {
		if p.v < 1 || p.v > 65535 {
			return fmt.Errorf("%s %d: want 1-65535", p.name, p.v)
		}
	}
	if c.MTU < 1280 || c.MTU > 9000 {
		return fmt.Errorf("mtu %d: want 1280-9000 (IPv6 needs at least 1280)", c.MTU)
	}
	if c.BootstrapExpect < 1 {
		return fmt.Errorf("bootstrap_expect %d: want at least 1", c.BootstrapExpect)
	}
	if c.MaxCore < 1 {
		return fmt.Errorf("max_core %d: want at least 1", c.MaxCore)
	}
	if c.RelayOnly && c.NoRelay {
		return errors.New("relay_only and no_relay: choose one")
	}
	if len(c.Interface) > 15 {
		return fmt.Errorf("interface %q: longer than 15 characters", c.Interface)
	}
	if err := identity.CheckMemberValidity(c.MemberValidity); err != nil {
		return fmt.Errorf("member_validity: %w", err)
	}
	if c.NeverSeenTimeout < 0 {
		return fmt.Errorf("never_seen_timeout %s: want a positive duration", c.NeverSeenTimeout)
	}
	eps, err := c.ParseEndpoints()
	if err != nil {
		return err
	}
	if !c.LabEndpoints {
		if err := discovery.CheckDialable(eps, netip.Prefix{}); err != nil {
			return fmt.Errorf("endpoints (--endpoint): %w; for a lab mesh on one host set lab_endpoints (--lab-endpoints)", err)
		}
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("metrics_addr %q: want host:port (e.g. 127.0.0.1:9101): %v", c.MetricsAddr, err)
		}
	}
	if _, _, err := net.SplitHostPort(c.EnrollAddr); err != nil {
		return fmt.Errorf("enroll_addr %q: %w", c.EnrollAddr, err)
	}
	return nil
}

// ParseEndpoints parses the configured endpoints (host:port; host must be an
// IP address: members dial them without DNS).
func (c Config) ParseEndpoints() ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, e := range c.Endpoints {
		ap, err := netip.ParseAddrPort(e)
		if err != nil {
			// Allow a bare address: the WireGuard listen port is implied.
			a, err2 := netip.ParseAddr(e)
			if err2 != nil {
				return nil, fmt.Errorf("endpoint %q: want IP:port or IP: %w", e, err)
			}
			ap = netip.AddrPortFrom(a, uint16(c.ListenPort))
		}
		out = append(out, ap)
	}
	return out, nil
}

// LoadConfig reads <state>/meshnode.toml if it exists (unknown keys are an
// error naming them) and fills defaults.
func LoadConfig(state identity.StateDir) (Config, error) {
	var c Config
	path := state.ConfigPath()
	md, err := toml.DecodeFile(path, &c)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	default:
		if und := md.Undecoded(); len(und) > 0 {
			return Config{}, fmt.Errorf("config %s: unknown setting %q", path, und[0].String())
		}
	}
	c.StateDir = state
	return c.withDefaults(), nil
}

// SaveConfig writes the settings that differ from the defaults, so that
// `init --iface x` and `join --listen-port y` stick for later `up`s while a
// setting left at its default follows the default of a later version.
//
// It walks the fields by reflection instead of naming them: a field added
// to Config is saved without anyone remembering to add it here (naming them
// once lost the JetStream limits and the log level on every rewrite).
// TestSaveConfigRoundTripsEveryField holds this to every field.
func SaveConfig(c Config) error {
	out := c
	o, d := reflect.ValueOf(&out).Elem(), reflect.ValueOf(DefaultConfig())
	for i := range o.NumField() {
		if reflect.DeepEqual(o.Field(i).Interface(), d.Field(i).Interface()) {
			o.Field(i).SetZero() // omitzero leaves it out of the file
		}
	}
	var b bytes.Buffer
	b.WriteString("# meshnode settings for this node; command-line flags win.\n")
	if err := toml.NewEncoder(&b).Encode(out); err != nil {
		return fmt.Errorf("config %s: %w", c.StateDir.ConfigPath(), err)
	}
	return identity.WriteFileAtomic(c.StateDir.ConfigPath(), b.Bytes(), 0o644)
}
