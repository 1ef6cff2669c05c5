package wg

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func key(b byte) wgtypes.Key {
	var k wgtypes.Key
	k[0] = b
	return k
}

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestDiff(t *testing.T) {
	const (
		epA  = "192.0.2.1:51820"
		epA2 = "192.0.2.9:51820"
		epRo = "198.51.100.7:40000" // where peer A roamed to
	)
	tests := []struct {
		name    string
		live    []PeerStats
		desired []Peer
		last    map[wgtypes.Key]netip.AddrPort
		want    Changes
		wantOps string // setText of the operations
	}{
		{
			name: "empty to empty",
		},
		{
			name:    "add one with endpoint and keepalive",
			desired: []Peer{{PublicKey: key(1), Endpoint: ap(epA), AllowedIPs: pfx("fd00::1/128"), PersistentKeepalive: 25 * time.Second}},
			want:    Changes{Added: 1},
			wantOps: "public_key=01..\nendpoint=192.0.2.1:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=fd00::1/128\n",
		},
		{
			name:    "add NATed peer: no endpoint, no keepalive",
			desired: []Peer{{PublicKey: key(1), AllowedIPs: pfx("fd00::1/128")}},
			want:    Changes{Added: 1},
			wantOps: "public_key=01..\nreplace_allowed_ips=true\nallowed_ip=fd00::1/128\n",
		},
		{
			name:    "identical: nothing",
			live:    []PeerStats{{PublicKey: key(1), Endpoint: ap(epA), AllowedIPs: pfx("fd00::1/128", "10.0.0.0/24"), PersistentKeepalive: 25 * time.Second}},
			desired: []Peer{{PublicKey: key(1), Endpoint: ap(epA), AllowedIPs: pfx("10.0.0.0/24", "fd00::1/128"), PersistentKeepalive: 25 * time.Second}},
			last:    map[wgtypes.Key]netip.AddrPort{key(1): ap(epA)},
		},
		{
			name:    "roamed, same desired endpoint as last time: untouched",
			live:    []PeerStats{{PublicKey: key(1), Endpoint: ap(epRo), AllowedIPs: pfx("fd00::1/128")}},
			desired: []Peer{{PublicKey: key(1), Endpoint: ap(epA), AllowedIPs: pfx("fd00::1/128")}},
			last:    map[wgtypes.Key]netip.AddrPort{key(1): ap(epA)},
		},
		{
			name:    "roamed, then a new endpoint is announced: written",
			live:    []PeerStats{{PublicKey: key(1), Endpoint: ap(epRo), AllowedIPs: pfx("fd00::1/128")}},
			desired: []Peer{{PublicKey: key(1), Endpoint: ap(epA2), AllowedIPs: pfx("fd00::1/128")}},
			last:    map[wgtypes.Key]netip.AddrPort{key(1): ap(epA)},
			want:    Changes{Updated: 1},
			wantOps: "public_key=01..\nupdate_only=true\nendpoint=192.0.2.9:51820\n",
		},
		{
			name:    "live peer nobody desired an endpoint for: desired one is new information",
			live:    []PeerStats{{PublicKey: key(1), AllowedIPs: pfx("fd00::1/128")}},
			desired: []Peer{{PublicKey: key(1), Endpoint: ap(epA), AllowedIPs: pfx("fd00::1/128")}},
			want:    Changes{Updated: 1},
			wantOps: "public_key=01..\nupdate_only=true\nendpoint=192.0.2.1:51820\n",
		},
		{
			name:    "zero desired endpoint never clears the live one",
			live:    []PeerStats{{PublicKey: key(1), Endpoint: ap(epRo), AllowedIPs: pfx("fd00::1/128")}},
			desired: []Peer{{PublicKey: key(1), AllowedIPs: pfx("fd00::1/128")}},
		},
		{
			name:    "desired equals live though last differs: nothing to write",
			live:    []PeerStats{{PublicKey: key(1), Endpoint: ap(epA2), AllowedIPs: pfx("fd00::1/128")}},
			desired: []Peer{{PublicKey: key(1), Endpoint: ap(epA2), AllowedIPs: pfx("fd00::1/128")}},
			last:    map[wgtypes.Key]netip.AddrPort{key(1): ap(epA)},
		},
		{
			name:    "allowed IPs changed: replaced, nothing else written",
			live:    []PeerStats{{PublicKey: key(1), Endpoint: ap(epA), AllowedIPs: pfx("fd00::1/128")}},
			desired: []Peer{{PublicKey: key(1), Endpoint: ap(epA), AllowedIPs: pfx("fd00::1/128", "fd00::5/128")}},
			last:    map[wgtypes.Key]netip.AddrPort{key(1): ap(epA)},
			want:    Changes{Updated: 1},
			wantOps: "public_key=01..\nupdate_only=true\nreplace_allowed_ips=true\nallowed_ip=fd00::1/128\nallowed_ip=fd00::5/128\n",
		},
		{
			name:    "all allowed IPs dropped",
			live:    []PeerStats{{PublicKey: key(1), AllowedIPs: pfx("fd00::1/128")}},
			desired: []Peer{{PublicKey: key(1)}},
			want:    Changes{Updated: 1},
			wantOps: "public_key=01..\nupdate_only=true\nreplace_allowed_ips=true\n",
		},
		{
			name:    "keepalive turned off",
			live:    []PeerStats{{PublicKey: key(1), PersistentKeepalive: 25 * time.Second}},
			desired: []Peer{{PublicKey: key(1)}},
			want:    Changes{Updated: 1},
			wantOps: "public_key=01..\nupdate_only=true\npersistent_keepalive_interval=0\n",
		},
		{
			name: "remove, update, add in one go, in that order",
			live: []PeerStats{
				{PublicKey: key(3), AllowedIPs: pfx("fd00::3/128")},
				{PublicKey: key(2), AllowedIPs: pfx("fd00::2/128")},
				{PublicKey: key(1), AllowedIPs: pfx("fd00::1/128")},
			},
			desired: []Peer{
				{PublicKey: key(4), AllowedIPs: pfx("fd00::4/128")},
				{PublicKey: key(2), AllowedIPs: pfx("fd00::2/128")},
				{PublicKey: key(1), AllowedIPs: pfx("fd00::1/128", "fd00::3/128")},
			},
			want: Changes{Added: 1, Updated: 1, Removed: 1},
			wantOps: "public_key=03..\nremove=true\n" +
				"public_key=01..\nupdate_only=true\nreplace_allowed_ips=true\nallowed_ip=fd00::1/128\nallowed_ip=fd00::3/128\n" +
				"public_key=04..\nreplace_allowed_ips=true\nallowed_ip=fd00::4/128\n",
		},
		{
			name: "everything removed",
			live: []PeerStats{{PublicKey: key(2)}, {PublicKey: key(1)}},
			want: Changes{Removed: 2},
			wantOps: "public_key=01..\nremove=true\n" +
				"public_key=02..\nremove=true\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			desired, err := normalize(tc.desired)
			if err != nil {
				t.Fatal(err)
			}
			ops, ch := diff(tc.live, desired, tc.last)
			if ch != tc.want {
				t.Errorf("changes = %v, want %v", ch, tc.want)
			}
			if got := shortKeys(setText(ops)); got != tc.wantOps {
				t.Errorf("ops:\n%s\nwant:\n%s", got, tc.wantOps)
			}
		})
	}
}

// shortKeys abbreviates the 64-hex-digit keys of the test (one non-zero
// leading byte) to their first byte.
func shortKeys(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if k, ok := strings.CutPrefix(l, "public_key="); ok && len(k) == 64 {
			lines[i] = "public_key=" + k[:2] + ".."
		}
	}
	return strings.Join(lines, "\n")
}

func TestNormalize(t *testing.T) {
	good := []Peer{{
		PublicKey:           key(1),
		Endpoint:            ap("[::ffff:192.0.2.1]:51820"),
		AllowedIPs:          pfx("fd00::5/128", "10.1.2.3/24", "fd00::5/128"),
		PersistentKeepalive: 25*time.Second + 300*time.Millisecond,
	}}
	n, err := normalize(good)
	if err != nil {
		t.Fatal(err)
	}
	if got := n[0].Endpoint; got != ap("192.0.2.1:51820") {
		t.Errorf("endpoint not unmapped: %v", got)
	}
	if got := n[0].AllowedIPs; len(got) != 2 || got[0] != netip.MustParsePrefix("10.1.2.0/24") || got[1] != netip.MustParsePrefix("fd00::5/128") {
		t.Errorf("allowed IPs not canonical: %v", got)
	}
	if n[0].PersistentKeepalive != 25*time.Second {
		t.Errorf("keepalive = %v", n[0].PersistentKeepalive)
	}
	if good[0].AllowedIPs[0] != netip.MustParsePrefix("fd00::5/128") {
		t.Error("normalize modified its input")
	}

	bad := []struct {
		name    string
		peers   []Peer
		wantErr string
	}{
		{"zero key", []Peer{{}}, "zero public key"},
		{"duplicate key", []Peer{{PublicKey: key(1)}, {PublicKey: key(1)}}, "listed twice"},
		{"port zero", []Peer{{PublicKey: key(1), Endpoint: ap("192.0.2.1:0")}}, "no port"},
		{"keepalive too long", []Peer{{PublicKey: key(1), PersistentKeepalive: 70000 * time.Second}}, "out of range"},
		{"negative keepalive", []Peer{{PublicKey: key(1), PersistentKeepalive: -time.Second}}, "out of range"},
		{"invalid prefix", []Peer{{PublicKey: key(1), AllowedIPs: []netip.Prefix{{}}}}, "invalid allowed IP"},
		{"mapped prefix", []Peer{{PublicKey: key(1), AllowedIPs: pfx("::ffff:10.0.0.1/128")}}, "IPv4-mapped"},
		{"prefix claimed twice", []Peer{
			{PublicKey: key(1), AllowedIPs: pfx("fd00::5/128")},
			{PublicKey: key(2), AllowedIPs: pfx("fd00::5/128")},
		}, "claimed by peers"},
	}
	for _, tc := range bad {
		if _, err := normalize(tc.peers); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.wantErr)
		}
	}
}
