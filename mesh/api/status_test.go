package api

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// legacyStatus is the local API's status as it was when every field was a
// string: the wire format that scripts and older tools parse.
type legacyStatus struct {
	Name          string         `json:"name"`
	Mesh          string         `json:"mesh"`
	Addr          string         `json:"overlay_addr"`
	WireGuardKey  string         `json:"wireguard_key"`
	Roles         string         `json:"roles"`
	Interface     string         `json:"interface"`
	ListenPort    int            `json:"listen_port"`
	Endpoints     []string       `json:"endpoints"`
	CertExpires   time.Time      `json:"cert_expires"`
	TicketExpires time.Time      `json:"ticket_expires"`
	Members       []legacyMember `json:"members"`
	NATS          NATSStatus     `json:"nats"`
	Healthy       bool           `json:"healthy"`
	Problems      []string       `json:"problems,omitempty"`
}

type legacyMember struct {
	Name          string    `json:"name"`
	Addr          string    `json:"overlay_addr"`
	State         string    `json:"state"`
	Roles         string    `json:"roles"`
	Path          string    `json:"path"`
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	RxBytes       int64     `json:"rx_bytes"`
	TxBytes       int64     `json:"tx_bytes"`
}

func TestStatusWire(t *testing.T) {
	var wgKey identity.WireGuardPublic
	for i := range wgKey {
		wgKey[i] = byte(i)
	}
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	addr := netip.MustParseAddr("fd12:3456:789a::1")
	beta := netip.MustParseAddr("fd12:3456:789a::2")
	typed := Status{
		Name: "alpha", Mesh: "acme", Addr: addr, WireGuardKey: wgKey, Roles: identity.RoleAdmin | identity.RoleHub,
		Interface: "mesh0", ListenPort: 51820,
		Endpoints:   []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:51820"), netip.MustParseAddrPort("[2001:db8::1]:51820")},
		CertExpires: t0, TicketExpires: t0.Add(time.Hour),
		Members: []MemberStatus{
			{Name: "beta", Addr: beta, State: StateAlive, Roles: identity.RoleHub, Path: "direct 192.0.2.2:51820", LastHandshake: t0, RxBytes: 1, TxBytes: 2},
			{Name: "gamma", State: StateLeft, Path: "-"},
		},
		NATS:    NATSStatus{ServerName: "alpha", ClientURL: "tls://[fd12:3456:789a::1]:4222", RoutesUp: 1, RoutesExpected: 2, JetStream: "off"},
		Healthy: false, Problems: []string{"NATS routes 1 of 2 up"},
	}
	legacy := legacyStatus{
		Name: "alpha", Mesh: "acme", Addr: "fd12:3456:789a::1", WireGuardKey: wgKey.String(), Roles: "admin,hub",
		Interface: "mesh0", ListenPort: 51820,
		Endpoints:   []string{"192.0.2.1:51820", "[2001:db8::1]:51820"},
		CertExpires: t0, TicketExpires: t0.Add(time.Hour),
		Members: []legacyMember{
			{Name: "beta", Addr: "fd12:3456:789a::2", State: "alive", Roles: "hub", Path: "direct 192.0.2.2:51820", LastHandshake: t0, RxBytes: 1, TxBytes: 2},
			// An absent address was "" and no roles "-", as before.
			{Name: "gamma", Addr: "", State: "left", Roles: "-", Path: "-"},
		},
		NATS:    typed.NATS,
		Healthy: false, Problems: typed.Problems,
	}
	got, err := json.Marshal(typed)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(legacy)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("typed status on the wire:\n got %s\nwant %s", got, want)
	}
	var back Status
	if err := json.Unmarshal(want, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, typed) {
		t.Fatalf("legacy JSON read back:\n got %+v\nwant %+v", back, typed)
	}

	// No endpoints and no members were null, and still are.
	empty, err := json.Marshal(Status{})
	if err != nil {
		t.Fatal(err)
	}
	legacyEmpty, _ := json.Marshal(legacyStatus{Roles: "-", WireGuardKey: identity.WireGuardPublic{}.String()})
	if string(empty) != string(legacyEmpty) {
		t.Fatalf("empty status:\n got %s\nwant %s", empty, legacyEmpty)
	}
}

func TestStateText(t *testing.T) {
	for s, name := range map[State]string{StateUnknown: "unknown", StateAlive: "alive", StateDead: "dead", StateLeft: "left"} {
		b, err := s.MarshalText()
		if err != nil || string(b) != name || s.String() != name {
			t.Errorf("%d: MarshalText %q, %v; String %q; want %q", int(s), b, err, s, name)
		}
		var back State
		if err := back.UnmarshalText([]byte(name)); err != nil || back != s {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", name, back, err, s)
		}
	}
	var s State
	for _, bad := range []string{"", "Alive", "suspect", "state(7)"} {
		if err := s.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) accepted", bad)
		}
	}
	if got := State(7).String(); got != "state(7)" {
		t.Errorf("State(7) = %q", got)
	}
}
