package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// GossipKeyNoticeVersion is the wire version SignGossipKeyNotice writes.
const GossipKeyNoticeVersion = 1

const (
	gossipNoticeDomain = "meshnode gossip key notice v1"
	gossipKeyIDDomain  = "meshnode gossip key id v1"
)

// MaxGossipKeyNoticeSize is the largest encoded notice: version, a mesh
// name of 63 bytes, epoch, key id, two times, CA key id, signature.
const MaxGossipKeyNoticeSize = 1 + 1 + 63 + 4 + 8 + 8 + 8 + 8 + ed25519.SignatureSize

// GossipKeyID names a gossip key without revealing it: the first 8 bytes
// of SHA-256("meshnode gossip key id v1" || key). The CA signs it into
// the notice, so a member that fetched a key from another member can
// check that it got the key the CA announced.
func GossipKeyID(key [GossipKeySize]byte) [8]byte {
	h := sha256.Sum256(append([]byte(gossipKeyIDDomain), key[:]...))
	return [8]byte(h[:8])
}

// NewGossipKey returns a random gossip key. A rotated key is random, not
// derived: the box it is rotated against knows everything the old key was
// derived from.
func NewGossipKey() ([GossipKeySize]byte, error) {
	var k [GossipKeySize]byte
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("gossip key: %w", err)
	}
	return k, nil
}

// GossipKeyNotice is the CA-signed announcement that gossip key epoch
// Epoch exists: members install its key when they have fetched it, seal
// with it from UseAt, and drop every older key at RetireAt. It rides in
// gossip; the key itself never does (members fetch it over the enrollment
// endpoint, inside TLS, proving their identity).
//
// Wire format v1: version u8 | mesh_len u8 | mesh | epoch u32 | key_id [8]
// | use_at i64 (unix seconds) | retire_at i64 | ca_key_id [8] | signature
// [64], signed by the CA over "meshnode gossip key notice v1" || every
// byte before the signature.
type GossipKeyNotice struct {
	Version   uint8
	Mesh      string
	Epoch     uint32
	KeyID     [8]byte
	UseAt     time.Time
	RetireAt  time.Time
	CAKeyID   [8]byte
	Signature [ed25519.SignatureSize]byte
}

// SignGossipKeyNotice announces key as gossip key epoch (at least 1).
func (ca *CA) SignGossipKeyNotice(epoch uint32, key [GossipKeySize]byte, useAt, retireAt time.Time) (*GossipKeyNotice, error) {
	if epoch == 0 {
		return nil, errors.New("gossip key notice: epoch 0 is the derived key and has no notice")
	}
	useAt, retireAt = useAt.Truncate(time.Second), retireAt.Truncate(time.Second)
	if retireAt.Before(useAt) {
		return nil, errors.New("gossip key notice: retire-at before use-at")
	}
	n := &GossipKeyNotice{
		Version: GossipKeyNoticeVersion, Mesh: ca.Mesh, Epoch: epoch, KeyID: GossipKeyID(key),
		UseAt: useAt.UTC(), RetireAt: retireAt.UTC(), CAKeyID: ca.Public.KeyID(),
	}
	copy(n.Signature[:], ca.sign(n.signedBytes()))
	return n, nil
}

func (n *GossipKeyNotice) body() []byte {
	b := []byte{n.Version, byte(len(n.Mesh))}
	b = append(b, n.Mesh...)
	b = binary.BigEndian.AppendUint32(b, n.Epoch)
	b = append(b, n.KeyID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(n.UseAt.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(n.RetireAt.Unix()))
	return append(b, n.CAKeyID[:]...)
}

func (n *GossipKeyNotice) signedBytes() []byte {
	return append([]byte(gossipNoticeDomain), n.body()...)
}

// Marshal encodes the notice.
func (n *GossipKeyNotice) Marshal() []byte { return append(n.body(), n.Signature[:]...) }

// Equal reports whether two notices encode to the same bytes.
func (n *GossipKeyNotice) Equal(o *GossipKeyNotice) bool {
	return bytes.Equal(n.Marshal(), o.Marshal())
}

// ParseGossipKeyNotice decodes a notice strictly (it does not verify it).
func ParseGossipKeyNotice(b []byte) (*GossipKeyNotice, error) {
	s := cryptobyte.String(b)
	var (
		n             GossipKeyNotice
		mesh          cryptobyte.String
		useAt, retire uint64
	)
	if s.ReadUint8(&n.Version) && n.Version != GossipKeyNoticeVersion {
		return nil, fmt.Errorf("gossip key notice: unknown version %d (this build reads %d)", n.Version, GossipKeyNoticeVersion)
	}
	ok := n.Version == GossipKeyNoticeVersion &&
		s.ReadUint8LengthPrefixed(&mesh) &&
		s.ReadUint32(&n.Epoch) &&
		s.CopyBytes(n.KeyID[:]) &&
		s.ReadUint64(&useAt) &&
		s.ReadUint64(&retire) &&
		s.CopyBytes(n.CAKeyID[:]) &&
		s.CopyBytes(n.Signature[:])
	if err := wireEnd(ok, s); err != nil {
		return nil, fmt.Errorf("gossip key notice: %w", err)
	}
	if err := ValidateName(string(mesh)); err != nil {
		return nil, fmt.Errorf("gossip key notice: mesh %w", err)
	}
	if n.Epoch == 0 {
		return nil, errors.New("gossip key notice: epoch 0 has no notice")
	}
	// Times beyond int64 seconds or before 1970 are no one's schedule.
	if useAt > 1<<40 || retire > 1<<40 || retire < useAt {
		return nil, errors.New("gossip key notice: use-at and retire-at out of range or out of order")
	}
	n.Mesh = string(mesh)
	n.UseAt, n.RetireAt = time.Unix(int64(useAt), 0).UTC(), time.Unix(int64(retire), 0).UTC()
	return &n, nil
}

// Verify checks the notice was signed by trust's CA for trust's mesh.
func (n *GossipKeyNotice) Verify(trust *Trust) error {
	if n.CAKeyID != trust.Public.KeyID() || n.Mesh != trust.Mesh {
		return fmt.Errorf("gossip key notice (epoch %d): issued by another CA or for another mesh (%q)", n.Epoch, n.Mesh)
	}
	if !trust.verify(n.signedBytes(), n.Signature[:]) {
		return fmt.Errorf("gossip key notice (epoch %d): bad CA signature", n.Epoch)
	}
	return nil
}

// String is a one-line summary for logs and errors.
func (n *GossipKeyNotice) String() string {
	return fmt.Sprintf("gossip key epoch %d (id %x, use at %s, retire older at %s)",
		n.Epoch, n.KeyID, n.UseAt.Format(time.RFC3339), n.RetireAt.Format(time.RFC3339))
}
