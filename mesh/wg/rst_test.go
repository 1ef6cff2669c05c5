package wg

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

var (
	local6 = netip.MustParseAddrPort("[fd5e:1e0b:77aa::1]:40000")
	cut6   = netip.MustParseAddrPort("[fd5e:1e0b:77aa::2]:4222")
	local4 = netip.MustParseAddrPort("10.9.0.1:40000")
	cut4   = netip.MustParseAddrPort("10.9.0.2:4222")
)

// tcpPacket builds an IPv4 or IPv6 TCP packet the way a kernel would send
// it, independently of rst.go (its checksums are left zero: the filter
// does not read them).
func tcpPacket(src, dst netip.AddrPort, seq, ack uint32, flags byte, payload []byte) []byte {
	tcp := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	copy(tcp[20:], payload)
	if src.Addr().Is4() {
		ip := make([]byte, 20, 20+len(tcp))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		ip[8], ip[9] = 64, 6
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		return append(ip, tcp...)
	}
	ip := make([]byte, 40, 40+len(tcp))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
	ip[6], ip[7] = 6, 64
	s, d := src.Addr().As16(), dst.Addr().As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return append(ip, tcp...)
}

// onesSum is RFC 1071 written out the long way (a second implementation,
// so that a bug in rst.go's sum cannot hide itself): 16-bit words of b,
// added with end-around carry after every word.
func onesSum(b []byte) uint16 {
	var s uint32
	for i := 0; i < len(b); i += 2 {
		w := uint32(b[i]) << 8
		if i+1 < len(b) {
			w |= uint32(b[i+1])
		}
		s += w
		if s > 0xffff {
			s -= 0xffff
		}
	}
	return uint16(s)
}

// checkReset parses rst as the kernel would and verifies every checksum
// against an explicitly built pseudo-header. It returns the TCP header.
func checkReset(t *testing.T, rst []byte) (src, dst netip.AddrPort, seq, ack uint32, flags byte) {
	t.Helper()
	var pseudo, tcp []byte
	var s, d netip.Addr
	switch rst[0] >> 4 {
	case 6:
		if len(rst) != 60 || binary.BigEndian.Uint16(rst[4:]) != 20 || rst[6] != 6 || rst[7] == 0 {
			t.Fatalf("IPv6 header of reset %x", rst)
		}
		s, d = netip.AddrFrom16([16]byte(rst[8:24])), netip.AddrFrom16([16]byte(rst[24:40]))
		tcp = rst[40:]
		// RFC 8200 8.1: source, destination, 32-bit length, 24 zero bits, next header.
		pseudo = append(append(append([]byte{}, rst[8:40]...), 0, 0, 0, byte(len(tcp))), 0, 0, 0, 6)
	case 4:
		if len(rst) != 40 || rst[0] != 0x45 || binary.BigEndian.Uint16(rst[2:]) != 40 || rst[9] != 6 || rst[8] == 0 {
			t.Fatalf("IPv4 header of reset %x", rst)
		}
		if onesSum(rst[:20]) != 0xffff {
			t.Fatalf("IPv4 header checksum wrong in %x", rst[:20])
		}
		s, d = netip.AddrFrom4([4]byte(rst[12:16])), netip.AddrFrom4([4]byte(rst[16:20]))
		tcp = rst[20:]
		// RFC 9293 3.1: source, destination, zero, protocol, TCP length.
		pseudo = append(append([]byte{}, rst[12:20]...), 0, 6, 0, byte(len(tcp)))
	default:
		t.Fatalf("reset %x is not IP", rst)
	}
	if onesSum(append(pseudo, tcp...)) != 0xffff {
		t.Fatalf("TCP checksum of %x is wrong", rst)
	}
	if tcp[12] != 5<<4 {
		t.Fatalf("TCP data offset %d", tcp[12]>>4)
	}
	return netip.AddrPortFrom(s, binary.BigEndian.Uint16(tcp[0:])),
		netip.AddrPortFrom(d, binary.BigEndian.Uint16(tcp[2:])),
		binary.BigEndian.Uint32(tcp[4:]), binary.BigEndian.Uint32(tcp[8:]), tcp[13]
}

func TestResetSegments(t *testing.T) {
	for _, tc := range []struct {
		name         string
		from, to     netip.AddrPort
		seq, ack     uint32
		flags        byte
		payload      int
		wantSeq      uint32
		wantAck      uint32
		wantFlags    byte
		wantNoAnswer bool
	}{
		{name: "SYN", from: local6, to: cut6, seq: 1000, flags: tcpSYN, wantAck: 1001, wantFlags: tcpRST | tcpACK},
		{name: "SYN wraps", from: local6, to: cut6, seq: 0xffffffff, flags: tcpSYN, wantAck: 0, wantFlags: tcpRST | tcpACK},
		{name: "SYN with data (fast open)", from: local6, to: cut6, seq: 7, flags: tcpSYN, payload: 10, wantAck: 18, wantFlags: tcpRST | tcpACK},
		{name: "FIN without ACK", from: local6, to: cut6, seq: 50, flags: tcpFIN, payload: 3, wantAck: 54, wantFlags: tcpRST | tcpACK},
		{name: "established data", from: local6, to: cut6, seq: 5000, ack: 7777, flags: tcpACK | 0x08, payload: 100, wantSeq: 7777, wantFlags: tcpRST},
		{name: "pure ACK", from: local6, to: cut6, seq: 5000, ack: 7777, flags: tcpACK, wantSeq: 7777, wantFlags: tcpRST},
		{name: "FIN|ACK", from: local6, to: cut6, seq: 1, ack: 0xfffffff0, flags: tcpFIN | tcpACK, wantSeq: 0xfffffff0, wantFlags: tcpRST},
		{name: "SYN|ACK (we are the server)", from: local6, to: cut6, seq: 9, ack: 31, flags: tcpSYN | tcpACK, wantSeq: 31, wantFlags: tcpRST},
		{name: "IPv4 SYN", from: local4, to: cut4, seq: 1000, flags: tcpSYN, wantAck: 1001, wantFlags: tcpRST | tcpACK},
		{name: "IPv4 data", from: local4, to: cut4, seq: 5, ack: 99, flags: tcpACK, payload: 1, wantSeq: 99, wantFlags: tcpRST},
		{name: "RST is not answered", from: local6, to: cut6, seq: 5, flags: tcpRST, wantNoAnswer: true},
		{name: "RST|ACK is not answered", from: local6, to: cut6, seq: 5, ack: 6, flags: tcpRST | tcpACK, wantNoAnswer: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := tcpPacket(tc.from, tc.to, tc.seq, tc.ack, tc.flags, make([]byte, tc.payload))
			seg, ok := parseTCP(pkt)
			if !ok {
				t.Fatalf("parseTCP refused %x", pkt)
			}
			rst, ok := appendReset(nil, seg)
			if tc.wantNoAnswer {
				if ok || len(rst) != 0 {
					t.Fatalf("answered %x with %x", pkt, rst)
				}
				return
			}
			if !ok {
				t.Fatal("no reset")
			}
			src, dst, seq, ack, flags := checkReset(t, rst)
			if src != tc.to || dst != tc.from {
				t.Errorf("reset %s -> %s, want %s -> %s", src, dst, tc.to, tc.from)
			}
			if seq != tc.wantSeq || ack != tc.wantAck || flags != tc.wantFlags {
				t.Errorf("reset seq=%d ack=%d flags=%#x, want seq=%d ack=%d flags=%#x", seq, ack, flags, tc.wantSeq, tc.wantAck, tc.wantFlags)
			}
		})
	}
}

func TestProbeSYN(t *testing.T) {
	syn := appendProbeSYN([]byte{0xee}, cut6, local6)
	if syn[0] != 0xee {
		t.Fatal("appendProbeSYN overwrote what it appended to")
	}
	src, dst, _, _, flags := checkReset(t, syn[1:])
	if src != cut6 || dst != local6 || flags != tcpSYN {
		t.Fatalf("probe %s -> %s flags %#x", src, dst, flags)
	}
}

// parseTCP refuses what it does not fully understand instead of guessing.
func TestParseTCPRefuses(t *testing.T) {
	good6 := tcpPacket(local6, cut6, 1, 2, tcpACK, []byte("data"))
	good4 := tcpPacket(local4, cut4, 1, 2, tcpACK, []byte("data"))
	mut := func(p []byte, f func([]byte)) []byte {
		c := append([]byte{}, p...)
		f(c)
		return c
	}
	for name, pkt := range map[string][]byte{
		"empty":                  nil,
		"IPv6 header only":       good6[:40],
		"IPv6 truncated TCP":     good6[:50],
		"IPv6 length too long":   mut(good6, func(p []byte) { binary.BigEndian.PutUint16(p[4:], 200) }),
		"IPv6 length too short":  mut(good6, func(p []byte) { binary.BigEndian.PutUint16(p[4:], 10) }),
		"IPv6 hop-by-hop header": mut(good6, func(p []byte) { p[6] = 0 }),
		"IPv6 UDP":               mut(good6, func(p []byte) { p[6] = 17 }),
		"IPv6 ICMPv6":            mut(good6, func(p []byte) { p[6] = 58 }),
		"TCP offset < 5":         mut(good6, func(p []byte) { p[52] = 4 << 4 }),
		"TCP offset past end":    mut(good6, func(p []byte) { p[52] = 15 << 4 }),
		"IPv4 IHL < 5":           mut(good4, func(p []byte) { p[0] = 0x44 }),
		"IPv4 total too long":    mut(good4, func(p []byte) { binary.BigEndian.PutUint16(p[2:], 300) }),
		"IPv4 more fragments":    mut(good4, func(p []byte) { p[6] = 0x20 }),
		"IPv4 fragment offset":   mut(good4, func(p []byte) { p[7] = 1 }),
		"IPv4 UDP":               mut(good4, func(p []byte) { p[9] = 17 }),
		"version 5":              mut(good6, func(p []byte) { p[0] = 0x50 }),
	} {
		if seg, ok := parseTCP(pkt); ok {
			t.Errorf("%s: parsed as %+v", name, seg)
		}
	}
	// The IPv6 payload length, not the buffer, ends the segment.
	seg, ok := parseTCP(append(append([]byte{}, good6...), 0, 0, 0))
	if !ok || seg.dataLen != 4 {
		t.Errorf("trailing bytes after the IPv6 payload: %+v %v", seg, ok)
	}
}

// FuzzParseTCP feeds garbage to the parser and the reset builder: no
// panic, and whatever is answered is a well-formed reset back to the
// sender.
func FuzzParseTCP(f *testing.F) {
	f.Add(tcpPacket(local6, cut6, 1000, 0, tcpSYN, nil))
	f.Add(tcpPacket(local6, cut6, 1, 2, tcpACK|0x08, []byte("hello")))
	f.Add(tcpPacket(local4, cut4, 1000, 0, tcpSYN, nil))
	f.Add([]byte{0x60})
	f.Add([]byte{0x45, 0, 0, 20})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if _, ok := destination(pkt); !ok && len(pkt) >= 40 && pkt[0]>>4 == 6 {
			t.Fatal("no destination for a full IPv6 header")
		}
		seg, ok := parseTCP(pkt)
		if !ok {
			return
		}
		rst, ok := appendReset(nil, seg)
		if !ok {
			if seg.flags&tcpRST == 0 {
				t.Fatalf("no reset for non-RST segment %+v", seg)
			}
			return
		}
		src, dst, _, _, flags := checkReset(t, rst)
		if src.Addr() != seg.dst || dst.Addr() != seg.src || src.Port() != seg.dstPort || dst.Port() != seg.srcPort || flags&tcpRST == 0 {
			t.Fatalf("reset %s -> %s flags %#x for %+v", src, dst, flags, seg)
		}
	})
}
