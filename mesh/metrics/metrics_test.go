package metrics

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/mesh/metrics/metricstest"
)

func sample() *Snapshot {
	exp := time.Date(2027, 12, 1, 0, 0, 0, 0, time.UTC)
	return &Snapshot{
		Version: "v0.3.0", GoVersion: "go1.26.8",
		Members: map[string]int{"alive": 3, "dead": 1, "revoked": 2},
		Peers:   map[string]int{"direct": 3, "none": 1},
		WireGuard: WireGuard{
			RxBytes: 1 << 20, TxBytes: 2 << 20, NoHandshake: 1, OldestHandshake: 95 * time.Second,
		},
		Gossip: Gossip{
			Refusals:    map[string]uint64{"bad-ca": 4, "expired": 1},
			Revocations: 2, PushPulls: 17, Probes: 420, SinceMembersChange: 12 * time.Second,
		},
		NATS: NATS{
			Running: true, RoutesUp: 3, RoutesExpected: 4, Connections: 5,
			InMsgs: 10, OutMsgs: 20, InBytes: 1000, OutBytes: 2000, SlowConsumers: 1,
			JetStream: JetStream{Enabled: true, MetaLeader: true, Streams: 2, Consumers: 3,
				MemoryBytes: 64, StoreBytes: 4096, MemoryLimit: 1 << 30, StoreLimit: 8 << 30},
		},
		Enroll:         Enroll{Admitted: 3, Refused: map[string]uint64{"token-used": 2}, RateLimited: 7},
		TicketNotAfter: exp, CertNotAfter: exp.Add(-time.Hour), CANotAfter: exp.AddDate(9, 0, 0),
	}
}

func TestWriteParsesWithEveryFamily(t *testing.T) {
	var b bytes.Buffer
	Write(&b, sample(), true)
	fams := metricstest.Parse(t, b.Bytes())
	for name, typ := range metricstest.Families {
		f, ok := fams[name]
		if !ok {
			t.Errorf("family %s missing", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("family %s is %v, want %v", name, f.GetType(), typ)
		}
	}
	for _, std := range []string{"go_goroutines", "go_gc_duration_seconds", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if _, ok := fams[std]; !ok {
			t.Errorf("standard family %s missing", std)
		}
	}
	for name := range fams {
		if !strings.HasPrefix(name, "meshnode_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("family %s has no meshnode_, go_ or process_ prefix", name)
		}
	}
}

func TestWriteValues(t *testing.T) {
	var b bytes.Buffer
	Write(&b, sample(), false)
	fams := metricstest.Parse(t, b.Bytes())
	cases := []struct {
		fam    string
		labels map[string]string
		want   float64
	}{
		{"meshnode_build_info", map[string]string{"version": "v0.3.0", "go": "go1.26.8"}, 1},
		{"meshnode_members", map[string]string{"state": "alive"}, 3},
		{"meshnode_members", map[string]string{"state": "dead"}, 1},
		{"meshnode_members", map[string]string{"state": "left"}, 0}, // zero series present
		{"meshnode_members", map[string]string{"state": "revoked"}, 2},
		{"meshnode_peers", map[string]string{"path": "direct"}, 3},
		{"meshnode_peers", map[string]string{"path": "relayed"}, 0},
		{"meshnode_wireguard_rx_bytes_total", nil, 1 << 20},
		{"meshnode_wireguard_oldest_handshake_age_seconds", nil, 95},
		{"meshnode_gossip_admission_refusals_total", map[string]string{"reason": "bad-ca"}, 4},
		{"meshnode_gossip_members_changed_age_seconds", nil, 12},
		{"meshnode_nats_routes_expected", nil, 4},
		{"meshnode_nats_slow_consumers_total", nil, 1},
		{"meshnode_jetstream_storage_bytes", map[string]string{"type": "file"}, 4096},
		{"meshnode_jetstream_storage_limit_bytes", map[string]string{"type": "memory"}, 1 << 30},
		{"meshnode_enroll_joins_refused_total", map[string]string{"reason": "token-used"}, 2},
		{"meshnode_enroll_rate_limited_total", nil, 7},
		{"meshnode_ticket_expiry_timestamp_seconds", nil, float64(time.Date(2027, 12, 1, 0, 0, 0, 0, time.UTC).Unix())},
		{"meshnode_last_renewal_timestamp_seconds", nil, 0},
	}
	for _, tc := range cases {
		if got := fams.MustValue(t, tc.fam, tc.labels); math.Abs(got-tc.want) > 1e-6 {
			t.Errorf("%s%v = %v, want %v", tc.fam, tc.labels, got, tc.want)
		}
	}
	if _, ok := fams["meshnode_wireguard_peer_rx_bytes_total"]; ok {
		t.Error("per-peer series written although PerPeer is empty")
	}
	if _, ok := fams["go_goroutines"]; ok {
		t.Error("process families written with process=false")
	}
}

func TestEmptySnapshotHasEveryFamily(t *testing.T) {
	var b bytes.Buffer
	Write(&b, &Snapshot{}, false)
	fams := metricstest.Parse(t, b.Bytes())
	for name := range metricstest.Families {
		if _, ok := fams[name]; !ok {
			t.Errorf("family %s missing from an empty snapshot", name)
		}
	}
	if got := fams.MustValue(t, "meshnode_enroll_joins_refused_total", map[string]string{"reason": "none"}); got != 0 {
		t.Errorf("placeholder refusal series = %v", got)
	}
}

func TestPerPeerSeriesAndHostileLabels(t *testing.T) {
	s := sample()
	hs := time.Unix(1_800_000_000, 0)
	s.WireGuard.PerPeer = []Peer{
		{Name: "edge1", Path: "direct", RxBytes: 5, TxBytes: 6, LastHandshake: hs},
		{Name: "edge1", Path: "direct", RxBytes: 99}, // same label set twice: first wins, no panic
		{Name: "we\"ird\\\nname\u00e9", Path: "none"},
	}
	var b bytes.Buffer
	Write(&b, s, false)
	fams := metricstest.Parse(t, b.Bytes())
	if got := fams.MustValue(t, "meshnode_wireguard_peer_rx_bytes_total", map[string]string{"peer": "edge1"}); got != 5 {
		t.Errorf("edge1 rx = %v, want 5", got)
	}
	if got := fams.MustValue(t, "meshnode_wireguard_peer_last_handshake_timestamp_seconds", map[string]string{"peer": "edge1"}); got != 1.8e9 {
		t.Errorf("edge1 handshake = %v", got)
	}
	if got := fams.MustValue(t, "meshnode_wireguard_peer_tx_bytes_total", map[string]string{"peer": "we\"ird\\_name_"}); got != 0 {
		t.Errorf("escaped peer tx = %v", got)
	}
}
