package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
)

// RevocationVersion is the version Revoke signs. Version 1 records (no
// names) are still read, verified and re-encoded byte for byte: they may
// sit in any member's revocations file or arrive by gossip.
const RevocationVersion = 2

// Each version signs under its own domain, so a record cannot be re-read
// as another version with the same signature.
var revocationDomains = map[uint8]string{
	1: "meshnode revocation v1",
	2: "meshnode revocation v2",
}

// MaxReasonLen bounds a revocation's free-text reason.
const MaxReasonLen = 200

// Revocation is a CA-signed record that a member's identity is no longer
// admitted. Revocations are permanent and gossiped to every member.
//
// Wire format v2: version u8 | identity [32] | time i64 (unix seconds) |
// name_len u8 | name | issuer_len u8 | issuer | reason_len u8 | reason
// (UTF-8) | ca_key_id [8] | signature [64], signed by the CA over
// "meshnode revocation v2" || every byte before the signature.
//
// Wire format v1 is the same without name and issuer, signed under
// "meshnode revocation v1".
//
// Name and Issuer are typed, signed fields rather than words in the
// reason: the revoked box prints "revoked by <issuer>", and the other
// members list the revoked member by name and take it out of JetStream
// by name, long after gossip has forgotten its ticket, without parsing
// free text that an operator wrote. Either may be empty (a v1 record, or
// a revocation of a key that was never seen as a member).
type Revocation struct {
	Version   uint8 // wire version; Revoke sets RevocationVersion
	Node      NodePublic
	Name      string // the member's name when it was revoked (v2)
	Issuer    string // the name of the admin node that signed it (v2)
	Time      time.Time
	Reason    string
	CAKeyID   [8]byte
	Signature [ed25519.SignatureSize]byte
}

// RevokeRequest says what Revoke signs.
type RevokeRequest struct {
	Node   NodePublic
	Name   string // the revoked member's name, if known
	Issuer string // the admin's own name
	Reason string
}

// Revoke signs a revocation of node that carries no names.
func (ca *CA) Revoke(node NodePublic, reason string, now time.Time) (*Revocation, error) {
	return ca.RevokeMember(RevokeRequest{Node: node, Reason: reason}, now)
}

// RevokeMember signs a revocation of req.Node naming the member and the
// admin that revoked it.
func (ca *CA) RevokeMember(req RevokeRequest, now time.Time) (*Revocation, error) {
	if len(req.Reason) > MaxReasonLen || !utf8.ValidString(req.Reason) {
		return nil, fmt.Errorf("revocation reason: want at most %d bytes of UTF-8", MaxReasonLen)
	}
	for _, n := range []struct{ what, name string }{{"member", req.Name}, {"issuer", req.Issuer}} {
		if n.name == "" {
			continue
		}
		if err := ValidateName(n.name); err != nil {
			return nil, fmt.Errorf("revocation %s: %w", n.what, err)
		}
	}
	r := &Revocation{
		Version: RevocationVersion, Node: req.Node, Name: req.Name, Issuer: req.Issuer,
		Time: now.Truncate(time.Second), Reason: req.Reason, CAKeyID: ca.Public.KeyID(),
	}
	copy(r.Signature[:], ca.sign(r.signedBytes()))
	return r, nil
}

func (r *Revocation) body() []byte {
	b := []byte{r.Version}
	b = append(b, r.Node[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.Unix()))
	if r.Version >= 2 {
		b = append(b, byte(len(r.Name)))
		b = append(b, r.Name...)
		b = append(b, byte(len(r.Issuer)))
		b = append(b, r.Issuer...)
	}
	b = append(b, byte(len(r.Reason)))
	b = append(b, r.Reason...)
	return append(b, r.CAKeyID[:]...)
}

func (r *Revocation) signedBytes() []byte {
	return append([]byte(revocationDomains[r.Version]), r.body()...)
}

// Marshal encodes the revocation in its own version.
func (r *Revocation) Marshal() []byte { return append(r.body(), r.Signature[:]...) }

// ParseRevocation decodes a revocation strictly (it does not verify it).
func ParseRevocation(b []byte) (*Revocation, error) {
	s := cryptobyte.String(b)
	var version uint8
	if s.ReadUint8(&version) && revocationDomains[version] == "" {
		return nil, fmt.Errorf("revocation: unknown version %d (this build reads 1 to %d)", version, RevocationVersion)
	}
	var (
		r                    = Revocation{Version: version}
		at                   uint64
		name, issuer, reason cryptobyte.String
	)
	ok := revocationDomains[version] != "" &&
		s.CopyBytes(r.Node[:]) &&
		s.ReadUint64(&at)
	if ok && version >= 2 {
		ok = s.ReadUint8LengthPrefixed(&name) && s.ReadUint8LengthPrefixed(&issuer)
	}
	ok = ok &&
		s.ReadUint8LengthPrefixed(&reason) &&
		s.CopyBytes(r.CAKeyID[:]) &&
		s.CopyBytes(r.Signature[:])
	if err := wireEnd(ok, s); err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	if len(reason) > MaxReasonLen || !utf8.Valid(reason) {
		return nil, fmt.Errorf("revocation: reason is not at most %d bytes of UTF-8", MaxReasonLen)
	}
	for _, n := range []struct {
		what string
		b    cryptobyte.String
	}{{"member name", name}, {"issuer", issuer}} {
		if len(n.b) == 0 {
			continue
		}
		if err := ValidateName(string(n.b)); err != nil {
			return nil, fmt.Errorf("revocation %s: %w", n.what, err)
		}
	}
	r.Time = time.Unix(int64(at), 0).UTC()
	r.Name, r.Issuer, r.Reason = string(name), string(issuer), string(reason)
	return &r, nil
}

// Verify checks the revocation was signed by the mesh CA.
func (r *Revocation) Verify(trust *Trust) error {
	if r.CAKeyID != trust.Public.KeyID() {
		return fmt.Errorf("revocation of %s: issued by another CA", r.Node.ShortString())
	}
	if !trust.verify(r.signedBytes(), r.Signature[:]) {
		return fmt.Errorf("revocation of %s: bad CA signature", r.Node.ShortString())
	}
	return nil
}

// RevocationSet is the set of verified revocations a node knows: it only
// grows (union merge), so gossip converges whatever the order.
type RevocationSet struct {
	trust *Trust
	mu    sync.RWMutex
	byKey map[NodePublic]*Revocation
}

// NewRevocationSet returns an empty set that admits only revocations signed
// by trust's CA.
func NewRevocationSet(trust *Trust) *RevocationSet {
	return &RevocationSet{trust: trust, byKey: map[NodePublic]*Revocation{}}
}

// Add verifies r and adds it. It reports whether the set changed.
//
// Of several records for one key the set keeps the earliest (any valid one
// revokes), and of records with the same time the one whose encoding sorts
// first, so that every member ends up with the same records whatever order
// gossip delivered them in.
func (s *RevocationSet) Add(r *Revocation) (bool, error) {
	if err := r.Verify(s.trust); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.byKey[r.Node]; ok && !revocationBefore(r, old) {
		return false, nil
	}
	s.byKey[r.Node] = r
	return true, nil
}

func revocationBefore(a, b *Revocation) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	return bytes.Compare(a.Marshal(), b.Marshal()) < 0
}

// Merge adds every valid record of others and returns the keys whose record
// changed: newly revoked keys, and revoked keys for which a record that
// wins over the one held (see Add) arrived. Callers save and pass on the
// records of those keys, so that every member converges on the same ones.
// Invalid records are skipped and reported together in err.
func (s *RevocationSet) Merge(others []*Revocation) (added []NodePublic, err error) {
	var errs []error
	for _, r := range others {
		ok, e := s.Add(r)
		if e != nil {
			errs = append(errs, e)
		}
		if ok {
			added = append(added, r.Node)
		}
	}
	return added, errors.Join(errs...)
}

// IsRevoked reports whether node has been revoked.
func (s *RevocationSet) IsRevoked(node NodePublic) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.byKey[node]
	return ok
}

// Get returns the record held for node.
func (s *RevocationSet) Get(node NodePublic) (*Revocation, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.byKey[node]
	return r, ok
}

// List returns every revocation, ordered by key.
func (s *RevocationSet) List() []*Revocation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Revocation, 0, len(s.byKey))
	for _, r := range s.byKey {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Revocation) int { return slices.Compare(a.Node[:], b.Node[:]) })
	return out
}

// Len is the number of revoked identities.
func (s *RevocationSet) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byKey)
}

// The revocation file is "MNRV" | version u8 | count u32 | count ×
// (len u16 | revocation).
const revocationFileMagic = "MNRV\x01"

// MarshalRevocations encodes a list for a file or a gossip push/pull.
func MarshalRevocations(list []*Revocation) []byte {
	return marshalRecordList(revocationFileMagic, list, (*Revocation).Marshal)
}

// maxRevocations bounds what a decoder will allocate for.
const maxRevocations = 1 << 16

// ParseRevocations decodes MarshalRevocations output strictly.
func ParseRevocations(b []byte) ([]*Revocation, error) {
	return parseRecordList(b, revocationFileMagic, "revocations", maxRevocations, ParseRevocation)
}

// Save writes the set atomically.
func (s *RevocationSet) Save(path string) error {
	return WriteFileAtomic(path, MarshalRevocations(s.List()), 0o644)
}

// LoadRevocations reads a revocation file; a missing file is an empty set.
// A record that fails verification makes the whole file an error: the file
// is ours, so a bad record means corruption or tampering.
func LoadRevocations(path string, trust *Trust) (*RevocationSet, error) {
	s := NewRevocationSet(trust)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	list, err := ParseRevocations(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := s.Merge(list); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Summary says who revoked the member, when and why, as status and logs
// print it: "revoked by alpha at 2026-03-14T15:00:00Z: stolen".
func (r *Revocation) Summary() string {
	by := r.Issuer
	if by == "" {
		by = "the mesh CA"
	}
	s := "revoked by " + by + " at " + r.Time.UTC().Format(time.RFC3339)
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s
}
