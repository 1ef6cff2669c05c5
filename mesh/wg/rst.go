package wg

import (
	"encoding/binary"
	"net/netip"
)

// This file reads the IP packets the kernel routes into the TUN toward a
// cut-off address (see cutoff.go) and builds the TCP segments the dead or
// revoked peer can no longer send: the reset that answers a segment, and
// the SYN that makes an idle local socket send one. Everything here reads
// bytes the kernel handed over; it never panics on short or garbage input
// and answers only what it fully understands.

const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	tcpHeaderLen  = 20
	protoTCP      = 6
	// resetHopLimit is the TTL/hop limit of what we write: the packet
	// never leaves this host, any value the kernel accepts will do.
	resetHopLimit = 64

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// destination returns the destination address of an IPv4 or IPv6 packet.
func destination(pkt []byte) (netip.Addr, bool) {
	if len(pkt) == 0 {
		return netip.Addr{}, false
	}
	switch pkt[0] >> 4 {
	case 6:
		if len(pkt) >= ipv6HeaderLen {
			return netip.AddrFrom16([16]byte(pkt[24:40])), true
		}
	case 4:
		if len(pkt) >= ipv4HeaderLen {
			return netip.AddrFrom4([4]byte(pkt[16:20])), true
		}
	}
	return netip.Addr{}, false
}

// tcpSegment is what a reset needs to know about the segment it answers.
type tcpSegment struct {
	src, dst         netip.Addr
	srcPort, dstPort uint16
	seq, ack         uint32
	flags            byte
	dataLen          int // payload bytes after the TCP header and options
}

// parseTCP returns the TCP segment carried by pkt. It refuses (false)
// anything that is not plainly TCP: a truncated or inconsistent header, an
// IPv6 packet whose next header is not TCP (extension headers are not
// walked: the kernel's own TCP over the overlay never sends them), an IPv4
// fragment. The TCP checksum is not checked: the kernel made the packet.
func parseTCP(pkt []byte) (tcpSegment, bool) {
	var s tcpSegment
	var tcp []byte
	switch {
	case len(pkt) >= ipv6HeaderLen && pkt[0]>>4 == 6:
		if pkt[6] != protoTCP {
			return s, false
		}
		end := ipv6HeaderLen + int(binary.BigEndian.Uint16(pkt[4:6]))
		if end > len(pkt) {
			return s, false
		}
		s.src = netip.AddrFrom16([16]byte(pkt[8:24]))
		s.dst = netip.AddrFrom16([16]byte(pkt[24:40]))
		tcp = pkt[ipv6HeaderLen:end]
	case len(pkt) >= ipv4HeaderLen && pkt[0]>>4 == 4:
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:4]))
		if ihl < ipv4HeaderLen || total < ihl || total > len(pkt) || pkt[9] != protoTCP {
			return s, false
		}
		// More-fragments set or a non-zero offset: not a whole segment.
		if binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
			return s, false
		}
		s.src = netip.AddrFrom4([4]byte(pkt[12:16]))
		s.dst = netip.AddrFrom4([4]byte(pkt[16:20]))
		tcp = pkt[ihl:total]
	default:
		return s, false
	}
	if len(tcp) < tcpHeaderLen {
		return s, false
	}
	off := int(tcp[12]>>4) * 4
	if off < tcpHeaderLen || off > len(tcp) {
		return s, false
	}
	s.srcPort = binary.BigEndian.Uint16(tcp[0:2])
	s.dstPort = binary.BigEndian.Uint16(tcp[2:4])
	s.seq = binary.BigEndian.Uint32(tcp[4:8])
	s.ack = binary.BigEndian.Uint32(tcp[8:12])
	s.flags = tcp[13]
	s.dataLen = len(tcp) - off
	return s, true
}

// appendReset appends the packet that resets seg as its destination would
// (RFC 9293 section 3.10.7.1, a segment arriving for a connection that does
// not exist): from seg's destination to its source, ports swapped, and
//
//   - seg has ACK set: RST with SEQ = seg.ACK, which is exactly the
//     sender's RCV.NXT, the one value Linux accepts without a challenge
//     ACK (RFC 5961);
//   - otherwise (a SYN): RST|ACK with SEQ = 0 and ACK = seg.SEQ + its
//     length, SYN and FIN counting one each, which is what a connecting
//     socket checks before it fails with ECONNREFUSED.
//
// A reset is never answered (false), nor is a segment whose addresses are
// of different families.
func appendReset(b []byte, seg tcpSegment) ([]byte, bool) {
	if seg.flags&tcpRST != 0 || seg.src.Is4() != seg.dst.Is4() {
		return b, false
	}
	var seq, ack uint32
	flags := byte(tcpRST)
	if seg.flags&tcpACK != 0 {
		seq = seg.ack
	} else {
		ack = seg.seq + uint32(seg.dataLen)
		if seg.flags&tcpSYN != 0 {
			ack++
		}
		if seg.flags&tcpFIN != 0 {
			ack++
		}
		flags |= tcpACK
	}
	return appendTCP(b, seg.dst, seg.src, seg.dstPort, seg.srcPort, seq, ack, flags), true
}

// appendProbeSYN appends a SYN from remote to local. Sent into an
// established (or closing) connection it is answered with a challenge ACK
// carrying the socket's RCV.NXT (RFC 5961 section 4; Linux since 3.6 for
// any SYN, in or out of window), which the filter then answers with a
// reset: that is how a socket blocked in read, which sends nothing of its
// own, learns that its peer is cut off.
func appendProbeSYN(b []byte, remote, local netip.AddrPort) []byte {
	return appendTCP(b, remote.Addr(), local.Addr(), remote.Port(), local.Port(), 0, 0, tcpSYN)
}

// appendTCP appends an option-less, payload-less TCP segment from src to
// dst in an IPv4 or IPv6 header (src decides), window 0, with its checksum.
func appendTCP(b []byte, src, dst netip.Addr, srcPort, dstPort uint16, seq, ack uint32, flags byte) []byte {
	start := len(b)
	var tcpAt int
	if src.Is4() {
		b = append(b, make([]byte, ipv4HeaderLen+tcpHeaderLen)...)
		ip := b[start:]
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:4], ipv4HeaderLen+tcpHeaderLen)
		ip[6] = 0x40 // don't fragment
		ip[8] = resetHopLimit
		ip[9] = protoTCP
		s, d := src.As4(), dst.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		binary.BigEndian.PutUint16(ip[10:12], ^fold(sum(ip[:ipv4HeaderLen], 0)))
		tcpAt = start + ipv4HeaderLen
	} else {
		b = append(b, make([]byte, ipv6HeaderLen+tcpHeaderLen)...)
		ip := b[start:]
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:6], tcpHeaderLen)
		ip[6] = protoTCP
		ip[7] = resetHopLimit
		s, d := src.As16(), dst.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
		tcpAt = start + ipv6HeaderLen
	}
	tcp := b[tcpAt:]
	binary.BigEndian.PutUint16(tcp[0:2], srcPort)
	binary.BigEndian.PutUint16(tcp[2:4], dstPort)
	binary.BigEndian.PutUint32(tcp[4:8], seq)
	binary.BigEndian.PutUint32(tcp[8:12], ack)
	tcp[12] = (tcpHeaderLen / 4) << 4
	tcp[13] = flags
	// The pseudo-header (RFC 9293 3.1, RFC 8200 8.1): addresses, protocol
	// and the TCP length; the zero bytes add nothing to the sum.
	ps := sum(src.AsSlice(), 0)
	ps = sum(dst.AsSlice(), ps)
	ps += protoTCP + tcpHeaderLen
	binary.BigEndian.PutUint16(tcp[16:18], ^fold(sum(tcp[:tcpHeaderLen], ps)))
	return b
}

// sum adds b to acc as big-endian 16-bit words (RFC 1071), unfolded.
func sum(b []byte, acc uint64) uint64 {
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// fold reduces an RFC 1071 sum to 16 bits with end-around carry.
func fold(acc uint64) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}
