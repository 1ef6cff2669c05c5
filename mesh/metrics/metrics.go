// Package metrics renders a node's state in the Prometheus text exposition
// format. It owns the metric names: every family meshnode exports is written
// here, from a Snapshot of plain values that mesh.Node fills at scrape time.
//
// Nothing is kept between scrapes except the process-wide Go and process
// collectors: counters are the node's own monotonic counters (discovery,
// enrollment, nats-server's Varz), read when Prometheus asks. That keeps the
// rendering a pure function, testable without a node.
//
// The library is github.com/VictoriaMetrics/metrics (≈0.34 MB in a static
// binary, against ≈2.85 MB for the official client): it writes the standard
// go_* and process_* families and the # TYPE lines a Prometheus parser reads.
package metrics

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

func init() {
	// # HELP / # TYPE lines: without them a parser types every family as
	// untyped and rate() on a counter still works, but promtool and
	// Prometheus' metadata API lose what each series is.
	vm.ExposeMetadata(true)
}

// Label values of the fixed-label families. Every value is written, zero
// included, so a dashboard sees a series before the first event.
var (
	MemberStates = []string{"alive", "dead", "left", "unknown", "revoked"}
	PeerPaths    = []string{"direct", "relayed", "none"}
)

// Snapshot is everything one scrape exports.
type Snapshot struct {
	Version   string // meshnode version
	GoVersion string

	Members map[string]int // the mesh's members by state (MemberStates), this node included
	Peers   map[string]int // WireGuard peers by path (PeerPaths)

	WireGuard WireGuard
	Gossip    Gossip
	NATS      NATS
	Enroll    Enroll

	TicketNotAfter time.Time
	CertNotAfter   time.Time
	CANotAfter     time.Time
	LastRenewal    time.Time // zero: never renewed since the node started
}

// WireGuard is the data plane, aggregated over every peer.
type WireGuard struct {
	RxBytes, TxBytes uint64
	// Peers without a handshake yet, and the oldest handshake of those
	// that have one: enough to alert on without a series per peer.
	NoHandshake     int
	OldestHandshake time.Duration
	// CutOff is how many overlay addresses the device answers with TCP
	// resets (dead or revoked members), and how many resets it wrote.
	CutOff       int
	CutOffResets uint64
	// DroppedMembers and DroppedRoutes are the entries of the member
	// table the plan left out of WireGuard (mesh.Plan.Dropped): a key or
	// address claimed twice, a route the CA did not allow.
	DroppedMembers, DroppedRoutes int
	// PerPeer is filled only when the operator asked for per-peer series
	// (1,000 nodes × 1,000 peers would be a million series).
	PerPeer []Peer
}

// Peer is one WireGuard peer's counters, for the per-peer families.
type Peer struct {
	Name          string
	Path          string
	RxBytes       uint64
	TxBytes       uint64
	LastHandshake time.Time // zero: none yet
}

// Gossip is the memberlist side.
type Gossip struct {
	Refusals           map[string]uint64 // admission refusals by reason
	Revocations        int               // revocation records known
	PushPulls          uint64            // full state exchanges merged
	Probes             uint64            // probe round trips completed
	SinceMembersChange time.Duration
	// DeathsRefuted counts the members gossip calls dead that answer
	// WireGuard handshakes: their NATS routes stay (mesh/natsdead.go).
	// Non-zero for long means gossip is broken where the tunnel is not.
	DeathsRefuted int
}

// NATS is read from the embedded nats-server's own monitoring structures.
type NATS struct {
	Running        bool
	RoutesUp       int
	RoutesExpected int
	Connections    int
	InMsgs         uint64
	OutMsgs        uint64
	InBytes        uint64
	OutBytes       uint64
	SlowConsumers  uint64
	JetStream      JetStream
}

// JetStream is this server's JetStream usage and limits.
type JetStream struct {
	Enabled     bool
	MetaLeader  bool // the meta group has a leader (this server or another)
	Streams     int
	Consumers   int
	MemoryBytes uint64
	StoreBytes  uint64
	MemoryLimit int64
	StoreLimit  int64
}

// Enroll is the enrollment endpoint.
type Enroll struct {
	Admitted    uint64
	Refused     map[string]uint64 // by reason (the wire error code)
	RateLimited uint64
}

// Write writes s, and the Go runtime and process families when process is
// set, in the Prometheus text format.
func Write(w io.Writer, s *Snapshot, process bool) {
	set := vm.NewSet()
	g := func(name string, v float64) { set.NewGauge(name, func() float64 { return v }) }
	c := func(name string, v uint64) { set.NewCounter(name).Set(v) }

	g(fmt.Sprintf(`meshnode_build_info{version=%s,go=%s}`, quote(s.Version), quote(s.GoVersion)), 1)

	for _, st := range MemberStates {
		g(`meshnode_members{state="`+st+`"}`, float64(s.Members[st]))
	}
	for _, p := range PeerPaths {
		g(`meshnode_peers{path="`+p+`"}`, float64(s.Peers[p]))
	}

	c("meshnode_wireguard_rx_bytes_total", s.WireGuard.RxBytes)
	c("meshnode_wireguard_tx_bytes_total", s.WireGuard.TxBytes)
	g("meshnode_wireguard_peers_without_handshake", float64(s.WireGuard.NoHandshake))
	g("meshnode_wireguard_oldest_handshake_age_seconds", s.WireGuard.OldestHandshake.Seconds())
	g("meshnode_wireguard_cutoff_addresses", float64(s.WireGuard.CutOff))
	c("meshnode_wireguard_cutoff_resets_total", s.WireGuard.CutOffResets)
	g(`meshnode_wireguard_dropped{kind="member"}`, float64(s.WireGuard.DroppedMembers))
	g(`meshnode_wireguard_dropped{kind="route"}`, float64(s.WireGuard.DroppedRoutes))
	seen := map[string]bool{}
	for _, p := range s.WireGuard.PerPeer {
		l := fmt.Sprintf(`{peer=%s,path=%s}`, quote(p.Name), quote(p.Path))
		if seen[l] { // one series per label set: the library panics on a second
			continue
		}
		seen[l] = true
		c("meshnode_wireguard_peer_rx_bytes_total"+l, p.RxBytes)
		c("meshnode_wireguard_peer_tx_bytes_total"+l, p.TxBytes)
		g("meshnode_wireguard_peer_last_handshake_timestamp_seconds"+l, unix(p.LastHandshake))
	}

	refusals(set, "meshnode_gossip_admission_refusals_total", s.Gossip.Refusals)
	g("meshnode_gossip_revocations", float64(s.Gossip.Revocations))
	c("meshnode_gossip_push_pulls_total", s.Gossip.PushPulls)
	c("meshnode_gossip_probes_total", s.Gossip.Probes)
	g("meshnode_gossip_members_changed_age_seconds", s.Gossip.SinceMembersChange.Seconds())
	g("meshnode_gossip_deaths_refuted", float64(s.Gossip.DeathsRefuted))

	n := s.NATS
	g("meshnode_nats_up", bool01(n.Running))
	g("meshnode_nats_routes_up", float64(n.RoutesUp))
	g("meshnode_nats_routes_expected", float64(n.RoutesExpected))
	g("meshnode_nats_client_connections", float64(n.Connections))
	c("meshnode_nats_in_msgs_total", n.InMsgs)
	c("meshnode_nats_out_msgs_total", n.OutMsgs)
	c("meshnode_nats_in_bytes_total", n.InBytes)
	c("meshnode_nats_out_bytes_total", n.OutBytes)
	c("meshnode_nats_slow_consumers_total", n.SlowConsumers)
	js := n.JetStream
	g("meshnode_jetstream_enabled", bool01(js.Enabled))
	g("meshnode_jetstream_meta_leader_present", bool01(js.MetaLeader))
	g("meshnode_jetstream_streams", float64(js.Streams))
	g("meshnode_jetstream_consumers", float64(js.Consumers))
	g(`meshnode_jetstream_storage_bytes{type="memory"}`, float64(js.MemoryBytes))
	g(`meshnode_jetstream_storage_bytes{type="file"}`, float64(js.StoreBytes))
	g(`meshnode_jetstream_storage_limit_bytes{type="memory"}`, float64(js.MemoryLimit))
	g(`meshnode_jetstream_storage_limit_bytes{type="file"}`, float64(js.StoreLimit))

	c("meshnode_enroll_joins_admitted_total", s.Enroll.Admitted)
	refusals(set, "meshnode_enroll_joins_refused_total", s.Enroll.Refused)
	c("meshnode_enroll_rate_limited_total", s.Enroll.RateLimited)

	g("meshnode_ticket_expiry_timestamp_seconds", unix(s.TicketNotAfter))
	g("meshnode_cert_expiry_timestamp_seconds", unix(s.CertNotAfter))
	g("meshnode_ca_expiry_timestamp_seconds", unix(s.CANotAfter))
	g("meshnode_last_renewal_timestamp_seconds", unix(s.LastRenewal))

	set.WritePrometheus(w)
	if process {
		vm.WriteProcessMetrics(w)
	}
}

// refusals writes one counter per reason, sorted, or a single zero series
// with reason="none" so the family exists before the first refusal.
func refusals(set *vm.Set, family string, by map[string]uint64) {
	if len(by) == 0 {
		set.NewCounter(family + `{reason="none"}`).Set(0)
		return
	}
	reasons := make([]string, 0, len(by))
	for r := range by {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		set.NewCounter(family + "{reason=" + quote(r) + "}").Set(by[r])
	}
}

// quote makes a label value: Prometheus escapes backslash, quote and
// newline, which is exactly what strconv.Quote does for printable ASCII;
// anything else (a name is a DNS label, a reason an error code) is replaced.
func quote(v string) string {
	clean := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '_'
		}
		return r
	}, v)
	return strconv.Quote(clean)
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
