package wg

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// This file speaks the WireGuard cross-platform configuration protocol (the
// text behind `wg show`/`wg set` and the UAPI socket) with the wireguard-go
// device in this process, so reading and changing the live device needs no
// socket round trip and no second parser of our own state.

// parseGet turns the output of a "get" operation into per-peer stats. Device
// lines (private_key, listen_port, fwmark) are skipped; unknown keys are an
// error so a protocol change is noticed rather than misread.
func parseGet(text string) ([]PeerStats, error) {
	var peers []PeerStats
	var cur *PeerStats
	var hsSec, hsNsec int64
	flush := func() {
		if cur == nil {
			return
		}
		if hsSec != 0 || hsNsec != 0 {
			cur.LastHandshake = time.Unix(hsSec, hsNsec)
		}
		peers = append(peers, *cur)
		cur, hsSec, hsNsec = nil, 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("uapi get line %d: no '=' in %q", n, line)
		}
		if k == "public_key" {
			flush()
			key, err := parseHexKey(v)
			if err != nil {
				return nil, fmt.Errorf("uapi get line %d: public_key: %w", n, err)
			}
			cur = &PeerStats{PublicKey: key}
			continue
		}
		if cur == nil {
			switch k {
			case "private_key", "listen_port", "fwmark", "errno":
				continue
			}
			return nil, fmt.Errorf("uapi get line %d: unexpected device key %q", n, k)
		}
		var err error
		switch k {
		case "preshared_key", "protocol_version":
		case "endpoint":
			cur.Endpoint, err = netip.ParseAddrPort(v)
		case "last_handshake_time_sec":
			hsSec, err = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			hsNsec, err = strconv.ParseInt(v, 10, 64)
		case "tx_bytes":
			cur.TxBytes, err = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			cur.RxBytes, err = strconv.ParseInt(v, 10, 64)
		case "persistent_keepalive_interval":
			var s uint64
			s, err = strconv.ParseUint(v, 10, 16)
			cur.PersistentKeepalive = time.Duration(s) * time.Second
		case "allowed_ip":
			var p netip.Prefix
			p, err = netip.ParsePrefix(v)
			cur.AllowedIPs = append(cur.AllowedIPs, p)
		default:
			err = fmt.Errorf("unknown key")
		}
		if err != nil {
			return nil, fmt.Errorf("uapi get line %d (%s): %w", n, k, err)
		}
	}
	flush()
	return peers, nil
}

func parseHexKey(s string) (wgtypes.Key, error) {
	var k wgtypes.Key
	if len(s) != 2*len(k) {
		return k, fmt.Errorf("key is %d hex digits, want %d", len(s), 2*len(k))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, err
	}
	return k, nil
}

// setText renders peer operations as a "set" operation body (without the
// leading "set=1" and trailing blank line, which IpcSet does not want).
func setText(ops []peerOp) string {
	var b strings.Builder
	for _, op := range ops {
		fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(op.Key[:]))
		switch op.Kind {
		case opRemove:
			b.WriteString("remove=true\n")
			continue
		case opUpdate:
			b.WriteString("update_only=true\n")
		}
		if op.Endpoint.IsValid() {
			fmt.Fprintf(&b, "endpoint=%s\n", op.Endpoint)
		}
		if op.SetKeepalive {
			fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(op.Keepalive/time.Second))
		}
		if op.SetAllowedIPs {
			b.WriteString("replace_allowed_ips=true\n")
			for _, p := range op.AllowedIPs {
				fmt.Fprintf(&b, "allowed_ip=%s\n", p)
			}
		}
	}
	return b.String()
}
