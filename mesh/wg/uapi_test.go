package wg

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A "get" answer in the shape wireguard-go writes it.
const sampleGet = `private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a
listen_port=51820
public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33
preshared_key=0000000000000000000000000000000000000000000000000000000000000000
protocol_version=1
endpoint=[abcd:23::33%2]:51820
last_handshake_time_sec=1700000000
last_handshake_time_nsec=5
tx_bytes=38333
rx_bytes=2224
persistent_keepalive_interval=25
allowed_ip=192.168.4.6/32
allowed_ip=fd00::6/128
public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376
preshared_key=0000000000000000000000000000000000000000000000000000000000000000
protocol_version=1
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
persistent_keepalive_interval=0
`

func TestParseGet(t *testing.T) {
	peers, err := parseGet(sampleGet)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 2 {
		t.Fatalf("got %d peers, want 2", len(peers))
	}
	p := peers[0]
	if got := p.PublicKey.String(); got != "uFmW/sycfx/G0lcqdu2hHVm80gvo5UOxXOS9hajnWjM=" {
		t.Errorf("key %s", got)
	}
	if p.Endpoint != netip.MustParseAddrPort("[abcd:23::33%2]:51820") {
		t.Errorf("endpoint %v", p.Endpoint)
	}
	if !p.LastHandshake.Equal(time.Unix(1700000000, 5)) {
		t.Errorf("handshake %v", p.LastHandshake)
	}
	if p.TxBytes != 38333 || p.RxBytes != 2224 || p.PersistentKeepalive != 25*time.Second {
		t.Errorf("counters %+v", p)
	}
	if len(p.AllowedIPs) != 2 || p.AllowedIPs[1] != netip.MustParsePrefix("fd00::6/128") {
		t.Errorf("allowed IPs %v", p.AllowedIPs)
	}
	q := peers[1]
	if q.Endpoint.IsValid() || !q.LastHandshake.IsZero() || len(q.AllowedIPs) != 0 {
		t.Errorf("second peer should be empty: %+v", q)
	}
}

func TestParseGetErrors(t *testing.T) {
	for _, in := range []string{
		"nonsense",
		"public_key=zz\n",
		"endpoint=1.2.3.4:5\n", // peer key before any peer
		"public_key=" + strings.Repeat("00", 32) + "\nwhat=1\n", // unknown key
		"public_key=" + strings.Repeat("00", 32) + "\nrx_bytes=x\n",
		"public_key=" + strings.Repeat("00", 32) + "\nallowed_ip=10.0.0.1\n",
	} {
		if _, err := parseGet(in); err == nil {
			t.Errorf("parseGet(%q) accepted", in)
		}
	}
}

// The parser reads text the device in this very process writes, but it must
// still never panic on anything, and what it accepts must survive a round
// trip through setText.
func FuzzParseGet(f *testing.F) {
	f.Add(sampleGet)
	f.Add("public_key=" + strings.Repeat("ab", 32) + "\nallowed_ip=::/0\n")
	f.Fuzz(func(t *testing.T, s string) {
		peers, err := parseGet(s)
		if err != nil {
			return
		}
		var ops []peerOp
		for _, p := range peers {
			ops = append(ops, peerOp{Kind: opAdd, Key: p.PublicKey, Endpoint: p.Endpoint,
				SetKeepalive: true, Keepalive: p.PersistentKeepalive, SetAllowedIPs: true, AllowedIPs: p.AllowedIPs})
		}
		text := setText(ops)
		// setText's peer lines are a subset of the get keys, so it parses.
		again, err := parseGet(strings.ReplaceAll(text, "replace_allowed_ips=true\n", ""))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", text, err)
		}
		if len(again) != len(peers) {
			t.Fatalf("round trip: %d peers, then %d", len(peers), len(again))
		}
	})
}
