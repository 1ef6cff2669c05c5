package main

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
)

// TestPrintStatus pins the human table: typed status fields print as the
// strings they replaced.
func TestPrintStatus(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	st := &api.Status{
		Name: "alpha", Mesh: "acme", Addr: netip.MustParseAddr("fd12:3456:789a::1"), Roles: identity.RoleAdmin | identity.RoleHub,
		Interface: "mesh0", ListenPort: 51820, CertExpires: now.Add(400 * 24 * time.Hour),
		Members: []api.MemberStatus{
			{Name: "beta", Addr: netip.MustParseAddr("fd12:3456:789a::2"), State: api.StateAlive, Path: "direct 192.0.2.2:51820", LastHandshake: now.Add(-5 * time.Second), RxBytes: 2048, TxBytes: 10},
			{Name: "gamma", Addr: netip.MustParseAddr("fd12:3456:789a::3"), State: api.StateDead, Path: "-"},
		},
		Revoked: []api.Revoked{
			{Name: "delta", Addr: netip.MustParseAddr("fd12:3456:789a::4"), Time: now.Add(-time.Hour), Issuer: "alpha", Reason: "stolen laptop"},
			{Node: identity.NodePublic{0xab, 0xcd, 0xef, 0x01}, Addr: netip.MustParseAddr("fd12:3456:789a::5"), Time: now.Add(-48 * time.Hour)},
		},
		NATS:     api.NATSStatus{ServerName: "alpha", RoutesUp: 1, RoutesExpected: 2, JetStream: "off"},
		Problems: []string{"member gamma is dead"},
	}
	var b bytes.Buffer
	printStatus(&b, st, now)
	want := `alpha  fd12:3456:789a::1  mesh acme  roles admin,hub  mesh0 :51820  cert expires 2031-02-06 (400d)
NAME   OVERLAY            STATE  PATH                    HANDSHAKE  TX    RX
beta   fd12:3456:789a::2  alive  direct 192.0.2.2:51820  5s ago     10 B  2.0 KiB
gamma  fd12:3456:789a::3  dead   -                       -          0 B   0 B
REVOKED   OVERLAY            WHEN                  BY     REASON
delta     fd12:3456:789a::4  2030-01-02T02:04:05Z  alpha  stolen laptop
abcdef01  fd12:3456:789a::5  2029-12-31T03:04:05Z  -      -
NATS alpha: core, routes 1/2, JetStream: off
degraded: member gamma is dead
`
	if got := b.String(); got != want {
		t.Errorf("printStatus:\n%s\nwant:\n%s", got, want)
	}
}

// TestNATSStatusLine: the NATS line says core or leaf, and on a leaf which core
// member it is connected to.
func TestNATSStatusLine(t *testing.T) {
	for _, c := range []struct {
		in   api.NATSStatus
		want string
	}{
		{api.NATSStatus{ServerName: "a", Role: api.NATSRoleCore, RoutesUp: 1, RoutesExpected: 1, Leaves: 2, JetStream: "ok"},
			"NATS a: core, routes 1/1, 2 leaves, JetStream: ok"},
		{api.NATSStatus{ServerName: "a", RoutesUp: 0, RoutesExpected: 0, JetStream: "off"}, // an earlier build: core
			"NATS a: core, routes 0/0, JetStream: off"},
		{api.NATSStatus{ServerName: "l", Role: api.NATSRoleLeaf, LeafOf: "a", LeafCore: 2, JetStream: "through the core (leaf)"},
			"NATS l: leaf, connected to core member a (of 2), JetStream: through the core (leaf)"},
		{api.NATSStatus{ServerName: "l", Role: api.NATSRoleLeaf, LeafCore: 2, JetStream: "through the core (leaf)"},
			"NATS l: leaf, connected to core member none (of 2), JetStream: through the core (leaf)"},
	} {
		if got := natsStatusLine(c.in); got != c.want {
			t.Errorf("natsStatusLine(%+v) =\n %q\nwant\n %q", c.in, got, c.want)
		}
	}
}
