package discovery

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/meshnode/meshnode/identity"
)

// Node meta wire format v1 (big-endian), at most MaxMetaSize bytes:
//
//	version u8 | flags u8 | ticket_len u8 | ticket | seq u64 |
//	nats_client_port u16 | nats_route_port u16 |
//	n_endpoints u8 | n_endpoints × (addr [16] | port u16) |
//	n_routes u8 | n_routes × (addr [16] | bits u8) |
//	signature [64]
//
// The signature is Ed25519 by the ticket's identity key over
// "meshnode meta v1" || every byte before the signature, so the dynamic part
// is bound to the CA-signed ticket it travels with. IPv4 addresses are
// carried as IPv4-mapped IPv6 and decoded back to IPv4.
const (
	metaVersion = 1
	metaDomain  = "meshnode meta v1"

	// MaxMetaSize is memberlist's node meta limit; every valid meta fits.
	MaxMetaSize = 512
	// MaxEndpoints bounds the underlay endpoints a member advertises.
	MaxEndpoints = 4
	// MaxRoutes bounds the extra prefixes (phones behind a hub) a member
	// advertises.
	MaxRoutes = 6

	metaFlagLeaving = 1 << 0
	metaKnownFlags  = metaFlagLeaving

	metaFixedSize = 1 + 1 + 1 + 8 + 2 + 2 + 1 + 1 + ed25519.SignatureSize
	endpointSize  = 16 + 2
	routeSize     = 16 + 1
	maxMetaBytes  = metaFixedSize + identity.MaxTicketSize + MaxEndpoints*endpointSize + MaxRoutes*routeSize
)

// The bounds above must keep every meta inside memberlist's limit.
var _ [MaxMetaSize - maxMetaBytes]struct{}

// meta is a member's node meta: its CA-signed ticket plus the part the node
// signs itself.
type meta struct {
	ticketRaw      []byte
	ticket         *identity.Ticket
	leaving        bool
	seq            uint64
	natsClientPort uint16
	natsRoutePort  uint16
	endpoints      []netip.AddrPort
	routes         []netip.Prefix
	signature      [ed25519.SignatureSize]byte
}

func (m *meta) body() []byte {
	b := make([]byte, 0, MaxMetaSize)
	var flags byte
	if m.leaving {
		flags |= metaFlagLeaving
	}
	b = append(b, metaVersion, flags, byte(len(m.ticketRaw)))
	b = append(b, m.ticketRaw...)
	b = binary.BigEndian.AppendUint64(b, m.seq)
	b = binary.BigEndian.AppendUint16(b, m.natsClientPort)
	b = binary.BigEndian.AppendUint16(b, m.natsRoutePort)
	b = append(b, byte(len(m.endpoints)))
	for _, ep := range m.endpoints {
		a := ep.Addr().As16()
		b = append(b, a[:]...)
		b = binary.BigEndian.AppendUint16(b, ep.Port())
	}
	b = append(b, byte(len(m.routes)))
	for _, p := range m.routes {
		a := p.Addr().As16()
		bits := p.Bits()
		if p.Addr().Is4() {
			bits += 96
		}
		b = append(b, a[:]...)
		b = append(b, byte(bits))
	}
	return b
}

func (m *meta) signedBytes() []byte { return append([]byte(metaDomain), m.body()...) }

func (m *meta) marshal() []byte { return append(m.body(), m.signature[:]...) }

// sign checks the dynamic part against the bounds and signs it.
func (m *meta) sign(id *identity.Identity) ([]byte, error) {
	if err := checkEndpoints(m.endpoints); err != nil {
		return nil, err
	}
	if err := checkRoutes(m.routes); err != nil {
		return nil, err
	}
	if m.ticket == nil || m.ticket.Node != id.Public() {
		return nil, errors.New("meta: ticket does not belong to this identity")
	}
	m.ticketRaw = m.ticket.Marshal()
	copy(m.signature[:], id.Sign(m.signedBytes()))
	b := m.marshal()
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("meta: %d bytes exceeds %d", len(b), MaxMetaSize)
	}
	return b, nil
}

// verify checks the node's signature (not the ticket: see admit).
func (m *meta) verify() bool {
	return m.ticket.Node.Verify(m.signedBytes(), m.signature[:])
}

func checkEndpoints(eps []netip.AddrPort) error {
	if len(eps) > MaxEndpoints {
		return fmt.Errorf("%d endpoints, at most %d fit in node meta", len(eps), MaxEndpoints)
	}
	for _, ep := range eps {
		if !ep.IsValid() || ep.Port() == 0 || ep.Addr().IsUnspecified() || ep.Addr().Zone() != "" || ep.Addr().Is4In6() {
			return fmt.Errorf("endpoint %s: want a specific address and a non-zero port, no zone", ep)
		}
	}
	return nil
}

func checkRoutes(routes []netip.Prefix) error {
	if len(routes) > MaxRoutes {
		return fmt.Errorf("%d routes, at most %d fit in node meta", len(routes), MaxRoutes)
	}
	for _, p := range routes {
		if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return fmt.Errorf("route %s: want a valid masked prefix", p)
		}
	}
	return nil
}

// metaReader is a strict cursor: the first short read sticks.
type metaReader struct {
	b   []byte
	err error
}

func (r *metaReader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = errors.New("truncated")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *metaReader) u8() byte {
	if v := r.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *metaReader) u16() uint16 {
	if v := r.bytes(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *metaReader) u64() uint64 {
	if v := r.bytes(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *metaReader) addr() netip.Addr {
	if v := r.bytes(16); v != nil {
		return netip.AddrFrom16([16]byte(v)).Unmap()
	}
	return netip.Addr{}
}

// parseMeta decodes a node meta strictly. It verifies nothing: see admit.
func parseMeta(b []byte) (*meta, error) {
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("meta: %d bytes exceeds %d", len(b), MaxMetaSize)
	}
	r := metaReader{b: b}
	if v := r.u8(); r.err == nil && v != metaVersion {
		return nil, fmt.Errorf("meta: unknown version %d (this build reads %d)", v, metaVersion)
	}
	flags := r.u8()
	if flags&^metaKnownFlags != 0 {
		return nil, fmt.Errorf("meta: unknown flags %#x", flags)
	}
	m := &meta{leaving: flags&metaFlagLeaving != 0}
	m.ticketRaw = r.bytes(int(r.u8()))
	m.seq = r.u64()
	m.natsClientPort = r.u16()
	m.natsRoutePort = r.u16()
	if n := int(r.u8()); n > MaxEndpoints {
		return nil, fmt.Errorf("meta: %d endpoints, at most %d", n, MaxEndpoints)
	} else {
		for range n {
			a := r.addr()
			m.endpoints = append(m.endpoints, netip.AddrPortFrom(a, r.u16()))
		}
	}
	if n := int(r.u8()); n > MaxRoutes {
		return nil, fmt.Errorf("meta: %d routes, at most %d", n, MaxRoutes)
	} else {
		for range n {
			a := r.addr()
			bits := int(r.u8())
			if a.Is4() {
				bits -= 96
			}
			p, err := a.Prefix(bits)
			if r.err == nil && (err != nil || p.Bits() != bits || p.Addr() != a) {
				return nil, fmt.Errorf("meta: route %s/%d is not a masked prefix", a, bits)
			}
			m.routes = append(m.routes, p)
		}
	}
	copy(m.signature[:], r.bytes(ed25519.SignatureSize))
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, fmt.Errorf("meta: %w", r.err)
	}
	t, err := identity.ParseTicket(m.ticketRaw)
	if err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	m.ticket = t
	m.ticketRaw = append([]byte(nil), m.ticketRaw...)
	if err := checkEndpoints(m.endpoints); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	if err := checkRoutes(m.routes); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	return m, nil
}
