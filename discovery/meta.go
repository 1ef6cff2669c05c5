package discovery

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/crypto/cryptobyte"

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
	if err := CheckEndpoints(m.endpoints); err != nil {
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

// CheckEndpoints reports whether eps can be advertised: at most
// MaxEndpoints (what fits in node meta), each a specific address with a
// non-zero port and no zone. Enrollment requests carry endpoints under the
// same rule, since the admitting node keeps them in its member table.
func CheckEndpoints(eps []netip.AddrPort) error {
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

// parseMeta decodes a node meta strictly. It verifies nothing: see admit.
func parseMeta(b []byte) (*meta, error) {
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("meta: %d bytes exceeds %d", len(b), MaxMetaSize)
	}
	s := cryptobyte.String(b)
	var version, flags uint8
	if s.ReadUint8(&version) && version != metaVersion {
		return nil, fmt.Errorf("meta: unknown version %d (this build reads %d)", version, metaVersion)
	}
	if s.ReadUint8(&flags) && flags&^metaKnownFlags != 0 {
		return nil, fmt.Errorf("meta: unknown flags %#x", flags)
	}
	m := &meta{leaving: flags&metaFlagLeaving != 0}
	var ticket cryptobyte.String
	var nEndpoints, nRoutes uint8
	ok := version == metaVersion &&
		s.ReadUint8LengthPrefixed(&ticket) &&
		s.ReadUint64(&m.seq) &&
		s.ReadUint16(&m.natsClientPort) &&
		s.ReadUint16(&m.natsRoutePort) &&
		s.ReadUint8(&nEndpoints)
	if ok && nEndpoints > MaxEndpoints {
		return nil, fmt.Errorf("meta: %d endpoints, at most %d", nEndpoints, MaxEndpoints)
	}
	for i := 0; ok && i < int(nEndpoints); i++ {
		var a [16]byte
		var port uint16
		if ok = s.CopyBytes(a[:]) && s.ReadUint16(&port); !ok {
			break
		}
		m.endpoints = append(m.endpoints, netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), port))
	}
	ok = ok && s.ReadUint8(&nRoutes)
	if ok && nRoutes > MaxRoutes {
		return nil, fmt.Errorf("meta: %d routes, at most %d", nRoutes, MaxRoutes)
	}
	for i := 0; ok && i < int(nRoutes); i++ {
		var a16 [16]byte
		var bits uint8
		if ok = s.CopyBytes(a16[:]) && s.ReadUint8(&bits); !ok {
			break
		}
		a, n := netip.AddrFrom16(a16).Unmap(), int(bits)
		if a.Is4() {
			n -= 96
		}
		p, err := a.Prefix(n)
		if err != nil || p.Bits() != n || p.Addr() != a {
			return nil, fmt.Errorf("meta: route %s/%d is not a masked prefix", a, n)
		}
		m.routes = append(m.routes, p)
	}
	ok = ok && s.CopyBytes(m.signature[:])
	if !ok {
		return nil, errors.New("meta: truncated")
	}
	if len(s) != 0 {
		return nil, fmt.Errorf("meta: %d trailing bytes", len(s))
	}
	m.ticketRaw = bytes.Clone(ticket)
	t, err := identity.ParseTicket(m.ticketRaw)
	if err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	m.ticket = t
	if err := CheckEndpoints(m.endpoints); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	if err := checkRoutes(m.routes); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	return m, nil
}
