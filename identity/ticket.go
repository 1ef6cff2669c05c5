package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Roles are what a member may do beyond plain membership.
type Roles uint8

const (
	// RoleAdmin may admit and revoke members (it holds the CA key).
	RoleAdmin Roles = 1 << iota
	// RoleHub is reachable from outside and relays for phones and NATed peers.
	RoleHub
	// RoleCore is a core member: one of the NATS route cluster and the
	// JetStream meta group, which every other (leaf) member reaches as a
	// NATS leaf node. The admitting CA decides it (a mesh-wide maximum of
	// core tickets), so every member agrees on the core set; a mesh whose
	// tickets carry no core bit at all is all core (see mesh.CoreSet).
	RoleCore

	knownRoles = RoleAdmin | RoleHub | RoleCore
)

var roleNames = []struct {
	r    Roles
	name string
}{{RoleAdmin, "admin"}, {RoleHub, "hub"}, {RoleCore, "core"}}

// Has reports whether every role in want is set.
func (r Roles) Has(want Roles) bool { return r&want == want }

// String is a comma-separated list such as "admin,hub", or "-" for none.
func (r Roles) String() string {
	var s []string
	for _, rn := range roleNames {
		if r.Has(rn.r) {
			s = append(s, rn.name)
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// MarshalText implements encoding.TextMarshaler with the String form, so
// that JSON (the local API's status) says "admin,hub", not 3.
func (r Roles) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseRoles.
func (r *Roles) UnmarshalText(b []byte) error {
	v, err := ParseRoles(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseRoles parses a comma-separated role list ("" and "-" are none).
func ParseRoles(s string) (Roles, error) {
	var r Roles
	if s == "" || s == "-" {
		return 0, nil
	}
	for _, part := range strings.Split(s, ",") {
		found := false
		for _, rn := range roleNames {
			if strings.TrimSpace(part) == rn.name {
				r |= rn.r
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown role %q (known: admin, hub, core)", part)
		}
	}
	return r, nil
}

// TicketVersion is the only ticket encoding this code reads and writes.
const TicketVersion = 1

// ticketDomain prefixes every ticket signature so that no other signed
// meshnode message can be replayed as a ticket.
const ticketDomain = "meshnode ticket v1"

// MaxTicketSize bounds the encoding: the ticket shares memberlist's 512-byte
// node meta with the endpoint part.
const MaxTicketSize = 1 + 1 + 63 + 32 + 32 + 16 + 1 + 8 + 8 + 8 + ed25519.SignatureSize

// ClockSkew is how far a verifier's clock may disagree with the issuer's.
const ClockSkew = 5 * time.Minute

// Ticket is the CA-signed membership record of one node: it binds a name,
// an identity key, a WireGuard key and an overlay address, for a time.
//
// Wire format v1 (big-endian):
//
//	version u8 | name_len u8 | name | identity [32] | wireguard [32] |
//	addr [16] | roles u8 | not_before i64 | not_after i64 (unix seconds) |
//	ca_key_id [8] | signature [64]
//
// The signature is Ed25519 by the CA over "meshnode ticket v1" || every
// byte before the signature.
type Ticket struct {
	Name      string
	Node      NodePublic
	WireGuard WireGuardPublic
	Addr      netip.Addr
	Roles     Roles
	NotBefore time.Time
	NotAfter  time.Time
	CAKeyID   [8]byte
	Signature [ed25519.SignatureSize]byte
}

// IssueTicket signs a ticket for a node. The WireGuard key cannot be derived
// from the identity key (it comes from the seed), so the caller must have
// checked the node's own signature binding the two (the join request does).
func (ca *CA) IssueTicket(name string, node NodePublic, wg WireGuardPublic, roles Roles, now time.Time, validity time.Duration) (*Ticket, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if roles&^knownRoles != 0 {
		return nil, fmt.Errorf("unknown roles %#x", uint8(roles))
	}
	if validity <= 0 {
		return nil, fmt.Errorf("ticket validity must be positive, got %s", validity)
	}
	t := &Ticket{
		Name:      name,
		Node:      node,
		WireGuard: wg,
		Addr:      OverlayAddr(ca.Prefix(), node),
		Roles:     roles,
		NotBefore: now.Add(-time.Minute).Truncate(time.Second),
		NotAfter:  now.Add(validity).Truncate(time.Second),
		CAKeyID:   ca.Public.KeyID(),
	}
	copy(t.Signature[:], ca.sign(t.signedBytes()))
	return t, nil
}

func (t *Ticket) body() []byte {
	b := make([]byte, 0, MaxTicketSize)
	b = append(b, TicketVersion, byte(len(t.Name)))
	b = append(b, t.Name...)
	b = append(b, t.Node[:]...)
	b = append(b, t.WireGuard[:]...)
	a := t.Addr.As16()
	b = append(b, a[:]...)
	b = append(b, byte(t.Roles))
	b = binary.BigEndian.AppendUint64(b, uint64(t.NotBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(t.NotAfter.Unix()))
	b = append(b, t.CAKeyID[:]...)
	return b
}

func (t *Ticket) signedBytes() []byte { return append([]byte(ticketDomain), t.body()...) }

// Marshal encodes the ticket.
func (t *Ticket) Marshal() []byte { return append(t.body(), t.Signature[:]...) }

// ParseTicket decodes a ticket strictly. It does not verify it: call Verify.
func ParseTicket(b []byte) (*Ticket, error) {
	s := cryptobyte.String(b)
	var version uint8
	if s.ReadUint8(&version) && version != TicketVersion {
		return nil, fmt.Errorf("ticket: unknown version %d (this build reads %d)", version, TicketVersion)
	}
	var (
		t      Ticket
		name   cryptobyte.String
		addr   [16]byte
		roles  uint8
		nb, na uint64
	)
	ok := version == TicketVersion &&
		s.ReadUint8LengthPrefixed(&name) &&
		s.CopyBytes(t.Node[:]) &&
		s.CopyBytes(t.WireGuard[:]) &&
		s.CopyBytes(addr[:]) &&
		s.ReadUint8(&roles) &&
		s.ReadUint64(&nb) &&
		s.ReadUint64(&na) &&
		s.CopyBytes(t.CAKeyID[:]) &&
		s.CopyBytes(t.Signature[:])
	if err := wireEnd(ok, s); err != nil {
		return nil, fmt.Errorf("ticket: %w", err)
	}
	t.Name = string(name)
	t.Addr = netip.AddrFrom16(addr)
	t.Roles = Roles(roles)
	t.NotBefore = time.Unix(int64(nb), 0).UTC()
	t.NotAfter = time.Unix(int64(na), 0).UTC()
	if err := ValidateName(t.Name); err != nil {
		return nil, fmt.Errorf("ticket: %w", err)
	}
	if t.Roles&^knownRoles != 0 {
		return nil, fmt.Errorf("ticket: unknown role bits %#x", uint8(t.Roles&^knownRoles))
	}
	return &t, nil
}

// Verify checks the CA signature, the validity window (allowing ClockSkew)
// and that the overlay address is the one derived from the identity key.
func (t *Ticket) Verify(trust *Trust, now time.Time) error {
	if err := t.VerifySignature(trust); err != nil {
		return err
	}
	if now.Add(ClockSkew).Before(t.NotBefore) {
		return fmt.Errorf("ticket for %q: not valid before %s", t.Name, t.NotBefore.UTC().Format(time.RFC3339))
	}
	if t.Expired(now) {
		return fmt.Errorf("ticket for %q: %w at %s", t.Name, ErrExpired, t.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// ErrExpired is wrapped by the errors of tickets and node certificates
// whose time ran out, so that a node can tell "renew me" from "not ours".
var ErrExpired = errors.New("expired")

// Expired reports whether the ticket's time ran out at now, allowing
// ClockSkew.
func (t *Ticket) Expired(now time.Time) bool { return now.Add(-ClockSkew).After(t.NotAfter) }

// Lifetime is the span the CA issued the ticket for.
func (t *Ticket) Lifetime() time.Duration { return t.NotAfter.Sub(t.NotBefore) }

// VerifySignature is Verify without the validity window: the ticket was
// issued by the mesh CA for the address derived from its identity key,
// whenever that was. Renewal accepts an expired ticket on this check (and
// its own grace period); everything else uses Verify.
func (t *Ticket) VerifySignature(trust *Trust) error {
	if t.CAKeyID != trust.Public.KeyID() {
		return fmt.Errorf("ticket for %q: issued by another CA (key id %x, mesh %q has %x)", t.Name, t.CAKeyID, trust.Mesh, trust.Public.KeyID())
	}
	if !trust.verify(t.signedBytes(), t.Signature[:]) {
		return fmt.Errorf("ticket for %q: bad CA signature", t.Name)
	}
	if want := OverlayAddr(trust.Prefix(), t.Node); t.Addr != want {
		return fmt.Errorf("ticket for %q: address %s is not the one derived from its identity key (%s)", t.Name, t.Addr, want)
	}
	return nil
}

// CheckOwn verifies a ticket as Verify does and also that it names this
// identity and its derived WireGuard key: a node's check of its own ticket.
func (id *Identity) CheckOwn(t *Ticket, trust *Trust, now time.Time) error {
	if err := t.Verify(trust, now); err != nil {
		return err
	}
	return id.checkOwnKeys(t)
}

// CheckOwnSignature is CheckOwn without the validity window: a node's
// check of its own ticket when an expired one is still worth renewing.
func (id *Identity) CheckOwnSignature(t *Ticket, trust *Trust) error {
	if err := t.VerifySignature(trust); err != nil {
		return err
	}
	return id.checkOwnKeys(t)
}

func (id *Identity) checkOwnKeys(t *Ticket) error {
	if t.Node != id.Public() {
		return fmt.Errorf("ticket for %q names identity %s, not this node's %s", t.Name, t.Node.ShortString(), id.Public().ShortString())
	}
	if t.WireGuard != id.WireGuardPublic() {
		return fmt.Errorf("ticket for %q names WireGuard key %s, not the one derived from this node's seed", t.Name, t.WireGuard)
	}
	return nil
}

// wireEnd turns the outcome of a chain of strict reads into the error the
// decoders share: a short read, or bytes left over after the last field.
func wireEnd(ok bool, rest cryptobyte.String) error {
	if !ok {
		return errors.New("truncated")
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing bytes", len(rest))
	}
	return nil
}

// Equal reports whether two tickets encode to the same bytes.
func (t *Ticket) Equal(o *Ticket) bool { return bytes.Equal(t.Marshal(), o.Marshal()) }
