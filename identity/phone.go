package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// A phone is a plain WireGuard peer (the stock iOS/Android app) of one or
// more hub members. It cannot gossip, so its CA-signed record travels the
// way revocations do: gossiped, persisted by every member, verified by
// every member against the CA. Its keys derive from a seed exactly as a
// node's do (FromSeed), so its overlay address and NATS nkey follow the
// node rules; the seed itself is shown once by `phone add` and stored
// nowhere.

// PhoneTicketVersion is the only phone ticket encoding this code reads.
const PhoneTicketVersion = 1

// phoneTicketDomain separates phone ticket signatures from every other
// CA signature (a node ticket can never verify as a phone ticket).
const phoneTicketDomain = "meshnode phone ticket v1"

// Limits of a phone ticket. A ticket is at most
// 1+1+63+32+32+16+1+4·32+2·(1+16·(1+MaxSubjectLen))+8+8+8+64 bytes; typical
// tickets (one hub, default subjects) are about 300.
const (
	// MaxPhoneHubs bounds the hubs one phone peers with: each is a separate
	// tunnel in the phone app.
	MaxPhoneHubs = 4
	// MaxPhoneSubjects bounds each of the publish and subscribe allow lists.
	MaxPhoneSubjects = 16
	// MaxSubjectLen bounds one NATS subject pattern in a grant.
	MaxSubjectLen = 128
)

// PhoneTicket is the CA-signed record of one phone: its name, identity key
// (= NATS nkey), WireGuard key, overlay address, the hubs it peers with
// and the NATS subjects it may use.
//
// Wire format v1 (big-endian):
//
//	version u8 | name_len u8 | name | identity [32] | wireguard [32] |
//	addr [16] | n_hubs u8 | n_hubs × hub identity [32] |
//	n_pub u8 | n_pub × (len u8 | subject) | n_sub u8 | n_sub × (len u8 | subject) |
//	not_before i64 | not_after i64 (unix seconds) | ca_key_id [8] | signature [64]
//
// The signature is Ed25519 by the CA over "meshnode phone ticket v1" ||
// every byte before the signature. Hubs are named by identity key, not by
// name: a name can be reused after its member is revoked, a key cannot.
type PhoneTicket struct {
	Name      string
	Node      NodePublic // the phone's identity key, also its NATS user nkey
	WireGuard WireGuardPublic
	Addr      netip.Addr
	Hubs      []NodePublic // in the order the tunnels were made; the first is the default route
	Pub, Sub  []string     // NATS subjects the phone may publish and subscribe to
	NotBefore time.Time
	NotAfter  time.Time
	CAKeyID   [8]byte
	Signature [ed25519.SignatureSize]byte
}

// DefaultPhoneSubjects is the grant a phone gets when none is given: its
// own subtree both ways, and its own request inbox prefix (nats clients
// must set the inbox prefix to PhoneInboxPrefix(name)).
func DefaultPhoneSubjects(name string) (pub, sub []string) {
	own := "phones." + name + ".>"
	return []string{own}, []string{own, PhoneInboxPrefix(name) + ".>"}
}

// PhoneInboxPrefix is the reply-inbox prefix a phone's NATS client uses.
// The shared "_INBOX.>" would let a phone read every other client's
// replies, so phones get an inbox subtree of their own.
func PhoneInboxPrefix(name string) string { return "_INBOX.phones." + name }

// IssuePhoneTicket signs a ticket for a phone whose identity is id (the
// caller made it from a fresh seed and shows the seed once).
func (ca *CA) IssuePhoneTicket(name string, id *Identity, hubs []NodePublic, pub, sub []string, now time.Time, validity time.Duration) (*PhoneTicket, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("phone ticket validity must be positive, got %s", validity)
	}
	t := &PhoneTicket{
		Name:      name,
		Node:      id.Public(),
		WireGuard: id.WireGuardPublic(),
		Addr:      OverlayAddr(ca.Prefix(), id.Public()),
		Hubs:      slices.Clone(hubs),
		Pub:       slices.Clone(pub),
		Sub:       slices.Clone(sub),
		NotBefore: now.Add(-time.Minute).Truncate(time.Second),
		NotAfter:  now.Add(validity).Truncate(time.Second),
		CAKeyID:   ca.Public.KeyID(),
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	copy(t.Signature[:], ca.sign(t.signedBytes()))
	return t, nil
}

// check is what both issuing and parsing insist on.
func (t *PhoneTicket) check() error {
	if err := ValidateName(t.Name); err != nil {
		return err
	}
	if len(t.Hubs) == 0 || len(t.Hubs) > MaxPhoneHubs {
		return fmt.Errorf("phone %q: %d hubs, want 1 to %d", t.Name, len(t.Hubs), MaxPhoneHubs)
	}
	for i, h := range t.Hubs {
		if h.IsZero() || h == t.Node {
			return fmt.Errorf("phone %q: hub %d is not a member key", t.Name, i)
		}
		if slices.Contains(t.Hubs[:i], h) {
			return fmt.Errorf("phone %q: hub %s named twice", t.Name, h.ShortString())
		}
	}
	for _, l := range []struct {
		what string
		s    []string
	}{{"publish", t.Pub}, {"subscribe", t.Sub}} {
		if len(l.s) > MaxPhoneSubjects {
			return fmt.Errorf("phone %q: %d %s subjects, at most %d", t.Name, len(l.s), l.what, MaxPhoneSubjects)
		}
		for _, s := range l.s {
			if err := ValidateSubject(s); err != nil {
				return fmt.Errorf("phone %q: %s %w", t.Name, l.what, err)
			}
		}
	}
	return nil
}

// ValidateSubject checks a NATS subject pattern for a phone grant:
// non-empty dot-separated tokens of printable ASCII without spaces, "*"
// only as a whole token and ">" only as the last.
func ValidateSubject(s string) error {
	if s == "" || len(s) > MaxSubjectLen {
		return fmt.Errorf("subject %q: want 1 to %d bytes", s, MaxSubjectLen)
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		if tok == "" {
			return fmt.Errorf("subject %q: empty token", s)
		}
		for _, c := range []byte(tok) {
			if c <= ' ' || c >= 0x7f {
				return fmt.Errorf("subject %q: only printable ASCII without spaces", s)
			}
		}
		if (strings.ContainsAny(tok, "*>") && len(tok) > 1) || (tok == ">" && i != len(toks)-1) {
			return fmt.Errorf("subject %q: wildcards are whole tokens, and > only last", s)
		}
	}
	return nil
}

func (t *PhoneTicket) body() []byte {
	b := []byte{PhoneTicketVersion, byte(len(t.Name))}
	b = append(b, t.Name...)
	b = append(b, t.Node[:]...)
	b = append(b, t.WireGuard[:]...)
	a := t.Addr.As16()
	b = append(b, a[:]...)
	b = append(b, byte(len(t.Hubs)))
	for _, h := range t.Hubs {
		b = append(b, h[:]...)
	}
	for _, l := range [][]string{t.Pub, t.Sub} {
		b = append(b, byte(len(l)))
		for _, s := range l {
			b = append(b, byte(len(s)))
			b = append(b, s...)
		}
	}
	b = binary.BigEndian.AppendUint64(b, uint64(t.NotBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(t.NotAfter.Unix()))
	return append(b, t.CAKeyID[:]...)
}

func (t *PhoneTicket) signedBytes() []byte { return append([]byte(phoneTicketDomain), t.body()...) }

// Marshal encodes the ticket.
func (t *PhoneTicket) Marshal() []byte { return append(t.body(), t.Signature[:]...) }

// Equal reports whether two tickets encode to the same bytes.
func (t *PhoneTicket) Equal(o *PhoneTicket) bool { return bytes.Equal(t.Marshal(), o.Marshal()) }

// ParsePhoneTicket decodes a phone ticket strictly. It does not verify it.
func ParsePhoneTicket(b []byte) (*PhoneTicket, error) {
	s := cryptobyte.String(b)
	var version uint8
	if s.ReadUint8(&version) && version != PhoneTicketVersion {
		return nil, fmt.Errorf("phone ticket: unknown version %d (this build reads %d)", version, PhoneTicketVersion)
	}
	var (
		t       PhoneTicket
		name    cryptobyte.String
		addr    [16]byte
		nHubs   uint8
		nb, na  uint64
		readErr error
	)
	ok := version == PhoneTicketVersion &&
		s.ReadUint8LengthPrefixed(&name) &&
		s.CopyBytes(t.Node[:]) &&
		s.CopyBytes(t.WireGuard[:]) &&
		s.CopyBytes(addr[:]) &&
		s.ReadUint8(&nHubs)
	if ok && (nHubs == 0 || nHubs > MaxPhoneHubs) {
		return nil, fmt.Errorf("phone ticket: %d hubs, want 1 to %d", nHubs, MaxPhoneHubs)
	}
	for i := 0; ok && i < int(nHubs); i++ {
		var h NodePublic
		ok = s.CopyBytes(h[:])
		t.Hubs = append(t.Hubs, h)
	}
	readList := func(dst *[]string) bool {
		var n uint8
		if !s.ReadUint8(&n) {
			return false
		}
		if n > MaxPhoneSubjects {
			readErr = fmt.Errorf("phone ticket: %d subjects, at most %d", n, MaxPhoneSubjects)
			return false
		}
		for range n {
			var subj cryptobyte.String
			if !s.ReadUint8LengthPrefixed(&subj) {
				return false
			}
			*dst = append(*dst, string(subj))
		}
		return true
	}
	ok = ok && readList(&t.Pub) && readList(&t.Sub) &&
		s.ReadUint64(&nb) &&
		s.ReadUint64(&na) &&
		s.CopyBytes(t.CAKeyID[:]) &&
		s.CopyBytes(t.Signature[:])
	if readErr != nil {
		return nil, readErr
	}
	if err := wireEnd(ok, s); err != nil {
		return nil, fmt.Errorf("phone ticket: %w", err)
	}
	t.Name = string(name)
	t.Addr = netip.AddrFrom16(addr)
	t.NotBefore = time.Unix(int64(nb), 0).UTC()
	t.NotAfter = time.Unix(int64(na), 0).UTC()
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("phone ticket: %w", err)
	}
	return &t, nil
}

// Verify checks the CA signature, the validity window (allowing ClockSkew)
// and that the overlay address derives from the phone's identity key.
func (t *PhoneTicket) Verify(trust *Trust, now time.Time) error {
	if t.CAKeyID != trust.Public.KeyID() {
		return fmt.Errorf("phone ticket for %q: issued by another CA", t.Name)
	}
	if !trust.verify(t.signedBytes(), t.Signature[:]) {
		return fmt.Errorf("phone ticket for %q: bad CA signature", t.Name)
	}
	if now.Add(ClockSkew).Before(t.NotBefore) {
		return fmt.Errorf("phone ticket for %q: not valid before %s", t.Name, t.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.Add(-ClockSkew).After(t.NotAfter) {
		return fmt.Errorf("phone ticket for %q: %w at %s", t.Name, ErrPhoneExpired, t.NotAfter.UTC().Format(time.RFC3339))
	}
	if want := OverlayAddr(trust.Prefix(), t.Node); t.Addr != want {
		return fmt.Errorf("phone ticket for %q: address %s is not the one derived from its identity key (%s)", t.Name, t.Addr, want)
	}
	return nil
}

// ErrPhoneExpired is wrapped by Verify for a ticket past its NotAfter.
var ErrPhoneExpired = errors.New("expired")

// HasHub reports whether the ticket names hub.
func (t *PhoneTicket) HasHub(hub NodePublic) bool { return slices.Contains(t.Hubs, hub) }

// PhoneSet is the set of verified phone tickets a node knows, by phone
// identity. Like RevocationSet it converges whatever the gossip order: of
// two tickets for one phone it keeps the one issued later (NotBefore), then
// the one whose encoding sorts first. Revoked phones are dropped (and never
// re-added) through the RevocationSet given to NewPhoneSet; expired tickets
// stay until Prune, so a clock that is briefly wrong loses nothing.
type PhoneSet struct {
	trust *Trust
	revs  *RevocationSet

	mu    sync.RWMutex
	byKey map[NodePublic]*PhoneTicket
}

// NewPhoneSet returns an empty set admitting tickets signed by trust's CA
// for phones revs does not revoke (revs may be nil).
func NewPhoneSet(trust *Trust, revs *RevocationSet) *PhoneSet {
	return &PhoneSet{trust: trust, revs: revs, byKey: map[NodePublic]*PhoneTicket{}}
}

func (s *PhoneSet) revoked(k NodePublic) bool { return s.revs != nil && s.revs.IsRevoked(k) }

// Add verifies t and adds it; it reports whether the set changed. A ticket
// for a revoked phone is refused with no error: it is stale, not forged.
func (s *PhoneSet) Add(t *PhoneTicket, now time.Time) (bool, error) {
	if err := t.Verify(s.trust, now); err != nil {
		return false, err
	}
	if s.revoked(t.Node) {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byKey[t.Node]; ok && !phoneTicketBefore(t, old) {
		return false, nil
	}
	s.byKey[t.Node] = t
	return true, nil
}

// phoneTicketBefore reports whether a wins over b for the same phone.
func phoneTicketBefore(a, b *PhoneTicket) bool {
	if !a.NotBefore.Equal(b.NotBefore) {
		return a.NotBefore.After(b.NotBefore)
	}
	return bytes.Compare(a.Marshal(), b.Marshal()) < 0
}

// Merge adds every valid ticket of list and returns those that changed the
// set (the caller passes them on). Invalid tickets are reported together.
func (s *PhoneSet) Merge(list []*PhoneTicket, now time.Time) (added []*PhoneTicket, err error) {
	var errs []error
	for _, t := range list {
		ok, e := s.Add(t, now)
		if e != nil {
			errs = append(errs, e)
		}
		if ok {
			added = append(added, t)
		}
	}
	return added, errors.Join(errs...)
}

// Prune drops revoked phones and tickets expired before now (with
// ClockSkew), and reports whether anything was dropped.
func (s *PhoneSet) Prune(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.byKey)
	for k, t := range s.byKey {
		if s.revoked(k) || now.Add(-ClockSkew).After(t.NotAfter) {
			delete(s.byKey, k)
		}
	}
	return len(s.byKey) != n
}

// Get returns the phone with identity k, if it is known and not revoked.
func (s *PhoneSet) Get(k NodePublic) (*PhoneTicket, bool) {
	if s == nil || s.revoked(k) {
		return nil, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.byKey[k]
	return t, ok
}

// ByName returns the unrevoked phone called name.
func (s *PhoneSet) ByName(name string) (*PhoneTicket, bool) {
	for _, t := range s.List() {
		if t.Name == name {
			return t, true
		}
	}
	return nil, false
}

// List returns every unrevoked phone ticket, by name then key.
func (s *PhoneSet) List() []*PhoneTicket {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	out := make([]*PhoneTicket, 0, len(s.byKey))
	for k, t := range s.byKey {
		if !s.revoked(k) {
			out = append(out, t)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *PhoneTicket) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return bytes.Compare(a.Node[:], b.Node[:])
	})
	return out
}

// The phone file is "MNPH" | version u8 | count u32 | count × (len u16 |
// ticket), the same framing as the revocation file.
const phoneFileMagic = "MNPH\x01"

// maxPhones bounds what a decoder allocates for.
const maxPhones = 1 << 14

// MarshalPhoneTickets encodes a list for a file or a gossip push/pull.
func MarshalPhoneTickets(list []*PhoneTicket) []byte {
	return marshalRecordList(phoneFileMagic, list, (*PhoneTicket).Marshal)
}

// ParsePhoneTickets decodes MarshalPhoneTickets output strictly.
func ParsePhoneTickets(b []byte) ([]*PhoneTicket, error) {
	return parseRecordList(b, phoneFileMagic, "phone tickets", maxPhones, ParsePhoneTicket)
}

// Save writes the set atomically. Tickets hold only public keys, but the
// file says who may reach the mesh, so it is 0600 like the other state.
func (s *PhoneSet) Save(path string) error {
	return WriteFileAtomic(path, MarshalPhoneTickets(s.List()), 0o600)
}

// LoadPhones reads a phone file into a new set; a missing file is an empty
// set. Unlike revocations, a ticket that no longer verifies (expired) is
// dropped, not an error: expiry is a normal end.
func LoadPhones(path string, trust *Trust, revs *RevocationSet, now time.Time) (*PhoneSet, error) {
	s := NewPhoneSet(trust, revs)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("phone tickets: %w", err)
	}
	list, err := ParsePhoneTickets(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, t := range list {
		if _, err := s.Add(t, now); err != nil && !errors.Is(err, ErrPhoneExpired) {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return s, nil
}

// PhonesPath is where a node persists the phone tickets it knows.
func (d StateDir) PhonesPath() string { return d.path("phones.bin") }
