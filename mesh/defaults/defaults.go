// Package defaults is the one table of meshnode's default values; it imports
// nothing of meshnode, so every package may import it.
//
// A default lives here when more than one package needs it or an operator
// may want to change it (DESIGN.md "Defaults"). Packages keep their own
// names for these values only as aliases (enroll.DefaultPort =
// EnrollPort), never as second definitions, so changing a value here
// changes it everywhere: the flags' help, meshnode.toml's defaults, the
// WireGuard device, gossip, NATS and the certificates.
package defaults

import "time"

// Where a node keeps its state and how its interface is called.
const (
	// StateDir is the state directory (`--state`): identity, certificates,
	// meshnode.toml, the local API socket, JetStream.
	StateDir = "/var/lib/meshnode"
	// Interface is the WireGuard interface name (`--iface`).
	Interface = "mesh0"
	// LogLevel is the slog level of the daemon (`--log-level`).
	LogLevel = "info"
)

// Ports. Only ListenPort and EnrollPort are on the underlay; the others
// listen on the node's overlay address, inside WireGuard.
const (
	// ListenPort is WireGuard's UDP port (`--listen-port`).
	ListenPort = 51820
	// EnrollPort is the enrollment endpoint's TCP port (`--enroll-addr`).
	EnrollPort = 51821
	// GossipPort is memberlist's port, the same on every member.
	GossipPort = 7946
	// GossipRejoinFanout is how many members gossip lost a node asks for
	// a full state exchange per rejoin round (discovery's rejoin loop);
	// more are taken in later rounds.
	GossipRejoinFanout = 8
	// NATSClientPort and NATSRoutePort are the embedded nats-server's
	// client and cluster route listeners.
	NATSClientPort = 4222
	NATSRoutePort  = 6222
	// NATSLeafPort is a core member's leaf-node listener: every leaf
	// member's nats-server connects to the core there (the same port on
	// every member, as gossip does not carry it).
	NATSLeafPort = 7422
	// MaxCore is a mesh's default maximum of core members (`meshnode init
	// --max-core`): the NATS route cluster and the JetStream meta group.
	// Every other member is a NATS leaf node of the core, so a mesh of at
	// most MaxCore members is all core.
	MaxCore = 5
	// ObservePort is where every node answers, over the overlay, "your
	// WireGuard endpoint as I see it" (TCP, HTTP; mesh/observe.go):
	// members behind NAT learn their mapped endpoint from hubs.
	ObservePort = 7947
)

// The overlay.
const (
	// MTU is the WireGuard interface's MTU; gossip datagrams are sized to
	// fit it.
	MTU = 1420
	// Keepalive is the persistent keepalive toward every member: it keeps
	// NAT mappings open (UDP conntrack timeouts are 30 s here).
	Keepalive = 25 * time.Second
	// ReconcileInterval is how often the member table is turned into
	// WireGuard peers and NATS routes even when nothing changed.
	ReconcileInterval = 5 * time.Second
	// NATSDeathProbeGrace is how long a member gossip calls dead has to
	// answer (a WireGuard handshake, a datagram to its kernel) before its
	// NATS routes go (mesh/natsdead.go). A live member answers in one
	// round trip; if both asks are lost its routes go and come back the
	// next time it sends anything.
	NATSDeathProbeGrace = time.Second
	// NATSDeathReask is how often a member gossip still calls dead, but
	// who answered, is asked again (more than wireguard-go's 5 s between
	// handshake initiations).
	NATSDeathReask = 10 * time.Second
	// NATSDeathNudgePort is the closed UDP port (discard) a member gossip
	// calls dead is sent one datagram at: its kernel's port-unreachable,
	// coming back through the tunnel, shows it alive (mesh/natsdead.go).
	NATSDeathNudgePort = 9
	// MemberRetention is how long a member that left or failed stays in the
	// persisted member table (and is rejoined) before it is forgotten.
	MemberRetention = 72 * time.Hour
)

// NATS and JetStream.
const (
	// BootstrapExpect is how many members an empty JetStream store waits
	// for before it bootstraps the meta group (1 for a one-node mesh).
	BootstrapExpect = 3
	// JetStreamMaxMemory and JetStreamMaxStore are explicit limits fit for
	// an edge box: nats-server reads zero as 75% of RAM.
	JetStreamMaxMemory = 64 << 20
	JetStreamMaxStore  = 1 << 30
	// NATSStartTimeout bounds the server's start when the caller gives no
	// earlier deadline.
	NATSStartTimeout = 15 * time.Second
	// NATSReloadDebounce is how long a route change waits for more changes
	// before the server reloads its route set.
	NATSReloadDebounce = 250 * time.Millisecond
	// NATSRecheckInterval is the safety-net period of the membership
	// recheck of connected clients.
	NATSRecheckInterval = time.Second
)

// Validity periods.
const (
	// CAValidity is the mesh CA certificate's lifetime.
	CAValidity = 10 * 365 * 24 * time.Hour
	// NodeCertValidity is a node certificate's (and ticket's) lifetime.
	NodeCertValidity = 365 * 24 * time.Hour
	// MemberValidity is a mesh's default member validity (`meshnode init
	// --member-validity`): the lifetime of the tickets and certificates
	// its admins issue.
	MemberValidity = NodeCertValidity
	// CAWarnBefore is how long before the mesh CA expires status starts
	// warning: the CA is not renewed automatically.
	CAWarnBefore = 365 * 24 * time.Hour
	// NeverSeenTimeout is how long a member admitted by an enrollment
	// endpoint is kept (and peered with) while gossip has never seen it
	// alive: a join whose newcomer never came up must not stay a
	// WireGuard peer for MemberRetention.
	NeverSeenTimeout = 10 * time.Minute
	// InviteTTL is how long a join token from `meshnode invite` is valid
	// (`--ttl`).
	InviteTTL = time.Hour
)

// The enrollment endpoint's limits (underlay TCP, open to anyone who can
// reach the box). Refusals are what guessing tokens produces; they are
// counted per source prefix (an IPv6 /64 is one subscriber, an IPv4
// address one host) and mesh-wide, and a request with a valid token is
// answered even from a prefix others abused.
const (
	// EnrollMaxFailures refusals per prefix within EnrollFailureWindow make
	// that prefix wait out the window.
	EnrollMaxFailures   = 10
	EnrollFailureWindow = time.Minute
	// EnrollTrackedPrefixes bounds the per-prefix table (least recently
	// seen evicted first).
	EnrollTrackedPrefixes = 4096
	// EnrollRefusalRate and EnrollRefusalBurst are the endpoint-wide token
	// bucket of refusals: beyond it every request without a valid token is
	// answered 429, whatever its source.
	EnrollRefusalRate  = 20 // per second
	EnrollRefusalBurst = 100
	// EnrollMaxConnsPerAddr and EnrollMaxConns cap open TCP connections
	// (an idle TLS connection holds about 35 KB).
	EnrollMaxConnsPerAddr = 8
	EnrollMaxConns        = 256
	// ChallengeTTL is how long a hello challenge is good for.
	ChallengeTTL = time.Minute
	// EnrollTicketRate and EnrollTicketBurst are the per-prefix token
	// bucket of GET /v2/ticket (the first step of a join, answered before
	// anything is proven): a joiner asks once per attempt, so a burst of
	// 10 and one every 6 s is plenty, and a scanner cannot make the
	// endpoint sign-and-send for free.
	EnrollTicketRate  = 10.0 / 60 // per second
	EnrollTicketBurst = 10
)

// Gossip key rotation (after a revocation). A member that learns of a new
// epoch fetches its key at once; the admin picks use-at and retire-at so
// that every alive member has fetched before anyone seals with it, and
// every member seals with it before the old key stops decrypting.
const (
	// GossipKeyUseAfter is how long after a rotation members start
	// sealing gossip with the new key.
	GossipKeyUseAfter = 10 * time.Second
	// GossipKeyRetireAfter is how long after a rotation the older keys
	// are removed: from then on the revoked box's key opens nothing.
	GossipKeyRetireAfter = 2 * time.Minute
	// GossipKeyLonelyAfter is how long a node sees no other member alive
	// (while it knows some) before it asks a member's enrollment endpoint
	// for the current gossip key: it may have been off across a rotation.
	GossipKeyLonelyAfter = 30 * time.Second
)
