package identity

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// The gossip keyring is the set of gossip keys a member holds, by epoch.
// Epoch 0 is the key every member derives from the route secret
// (Member.GossipKey): a mesh that never rotated has no file at all. Each
// rotation (after a revocation) adds epoch n+1 with a random key and a
// CA-signed GossipKeyNotice saying when members start sealing with it and
// when the older keys go.
//
// The schedule (GossipKeyring.Schedule) is a pure function of the ring and
// the time: every key that is not retired decrypts, and the newest key
// whose use-at has passed seals. Epoch e is retired at the earliest
// retire-at of any newer notice the ring holds.

// Errors of GossipKeyring.Check and Add, for errors.Is.
var (
	// ErrGossipKeyOld: a notice for an epoch older than the newest held,
	// or the same one again.
	ErrGossipKeyOld = errors.New("not newer than the gossip key held")
	// ErrGossipKeyMismatch: the key is not the one the notice names.
	ErrGossipKeyMismatch = errors.New("key does not match the notice's key id")
)

// GossipKeyEntry is one rotated gossip key and the notice that announced it.
type GossipKeyEntry struct {
	Notice *GossipKeyNotice
	Key    [GossipKeySize]byte
}

// GossipKeyring holds epoch 0 (derived) and the rotated keys, ascending by
// epoch. It is not safe for concurrent use: its owner locks it.
type GossipKeyring struct {
	trust   *Trust
	base    [GossipKeySize]byte
	entries []GossipKeyEntry
}

// NewGossipKeyring is the ring of a member that knows only epoch 0.
func NewGossipKeyring(m *Member) *GossipKeyring {
	return &GossipKeyring{trust: m.Trust, base: m.GossipKey()}
}

// Epoch is the newest epoch held (0 when the mesh never rotated).
func (r *GossipKeyring) Epoch() uint32 {
	if len(r.entries) == 0 {
		return 0
	}
	return r.entries[len(r.entries)-1].Notice.Epoch
}

// Newest is the newest rotated key and its notice (false at epoch 0).
func (r *GossipKeyring) Newest() (GossipKeyEntry, bool) {
	if len(r.entries) == 0 {
		return GossipKeyEntry{}, false
	}
	return r.entries[len(r.entries)-1], true
}

// Entries are the rotated keys held, ascending by epoch.
func (r *GossipKeyring) Entries() []GossipKeyEntry { return slices.Clone(r.entries) }

// Check reports whether notice n is news to the ring: CA-signed for this
// mesh and for an epoch newer than the newest held. Of two notices for one
// epoch (two admins rotating at once) the one whose encoding sorts first
// wins, so that every member settles on the same one whatever it saw first.
func (r *GossipKeyring) Check(n *GossipKeyNotice) error {
	if err := n.Verify(r.trust); err != nil {
		return err
	}
	newest, ok := r.Newest()
	switch {
	case !ok || n.Epoch > newest.Notice.Epoch:
		return nil
	case n.Epoch == newest.Notice.Epoch && bytes.Compare(n.Marshal(), newest.Notice.Marshal()) < 0:
		return nil
	}
	return fmt.Errorf("gossip key notice for epoch %d: %w (epoch %d)", n.Epoch, ErrGossipKeyOld, r.Epoch())
}

// Add installs key for notice n after Check, and after checking that key
// is the one n names.
func (r *GossipKeyring) Add(n *GossipKeyNotice, key [GossipKeySize]byte) error {
	if err := r.Check(n); err != nil {
		return err
	}
	if GossipKeyID(key) != n.KeyID {
		return fmt.Errorf("gossip key for epoch %d: %w", n.Epoch, ErrGossipKeyMismatch)
	}
	if newest, ok := r.Newest(); ok && newest.Notice.Epoch == n.Epoch {
		r.entries = r.entries[:len(r.entries)-1] // the losing notice of a tie
	}
	r.entries = append(r.entries, GossipKeyEntry{Notice: n, Key: key})
	return nil
}

// GossipKeySchedule is what memberlist's keyring should hold at one time.
type GossipKeySchedule struct {
	// Primary seals everything sent; PrimaryEpoch is its epoch.
	Primary      [GossipKeySize]byte
	PrimaryEpoch uint32
	// Installed decrypt, the primary first, then newest first.
	Installed [][GossipKeySize]byte
	// Epochs are the epochs of Installed, in the same order.
	Epochs []uint32
	// Next is when the schedule changes next (zero: never).
	Next time.Time
}

// Schedule is the keyring memberlist should hold at now.
func (r *GossipKeyring) Schedule(now time.Time) GossipKeySchedule {
	type key struct {
		epoch         uint32
		key           [GossipKeySize]byte
		useAt, retire time.Time // zero: since ever, never
	}
	keys := []key{{epoch: 0, key: r.base}}
	for _, e := range r.entries {
		keys = append(keys, key{epoch: e.Notice.Epoch, key: e.Key, useAt: e.Notice.UseAt})
	}
	// A key retires at the earliest retire-at of the newer notices.
	for i := range keys {
		for _, e := range r.entries {
			if e.Notice.Epoch > keys[i].epoch && (keys[i].retire.IsZero() || e.Notice.RetireAt.Before(keys[i].retire)) {
				keys[i].retire = e.Notice.RetireAt
			}
		}
	}
	var s GossipKeySchedule
	primary := 0
	for i, k := range keys {
		if !now.Before(k.useAt) {
			primary = i
		}
	}
	s.Primary, s.PrimaryEpoch = keys[primary].key, keys[primary].epoch
	s.Installed, s.Epochs = [][GossipKeySize]byte{s.Primary}, []uint32{s.PrimaryEpoch}
	next := func(t time.Time) {
		if t.After(now) && (s.Next.IsZero() || t.Before(s.Next)) {
			s.Next = t
		}
	}
	for i := len(keys) - 1; i >= 0; i-- {
		k := keys[i]
		next(k.useAt)
		next(k.retire)
		if i == primary || (!k.retire.IsZero() && !now.Before(k.retire)) {
			continue
		}
		s.Installed, s.Epochs = append(s.Installed, k.key), append(s.Epochs, k.epoch)
	}
	return s
}

// Prune forgets rotated keys that are retired at now, except the newest,
// whose notice says which epoch the mesh is at. It reports whether the
// ring changed.
func (r *GossipKeyring) Prune(now time.Time) bool {
	var keep []GossipKeyEntry
	for i, e := range r.entries {
		retired := false
		for _, f := range r.entries[i+1:] {
			if !now.Before(f.Notice.RetireAt) {
				retired = true
			}
		}
		if !retired {
			keep = append(keep, e)
		}
	}
	if len(keep) == len(r.entries) {
		return false
	}
	r.entries = keep
	return true
}

// The keyring file (gossip.keys, 0600) is
//
//	"MNGK" | version u8 = 1 | count u16 | count × (key [32] | notice_len u16 | notice)
//
// ascending by epoch. Epoch 0 is not in it: it is derived.
const (
	gossipKeyringMagic = "MNGK\x01"
	maxGossipKeyring   = 64
)

// MarshalGossipKeyring encodes the rotated keys for the keyring file.
func MarshalGossipKeyring(entries []GossipKeyEntry) []byte {
	b := []byte(gossipKeyringMagic)
	b = binary.BigEndian.AppendUint16(b, uint16(len(entries)))
	for _, e := range entries {
		b = append(b, e.Key[:]...)
		nb := e.Notice.Marshal()
		b = binary.BigEndian.AppendUint16(b, uint16(len(nb)))
		b = append(b, nb...)
	}
	return b
}

// ParseGossipKeyring decodes a keyring file strictly: magic and version,
// a count the data can hold, notices that parse, epochs strictly
// ascending, each key matching its notice's key id. It does not verify the
// CA signatures (LoadGossipKeyring does).
func ParseGossipKeyring(b []byte) ([]GossipKeyEntry, error) {
	s := cryptobyte.String(b)
	var magic []byte
	if !s.ReadBytes(&magic, len(gossipKeyringMagic)) || string(magic) != gossipKeyringMagic {
		return nil, errors.New("gossip keyring: bad magic or unknown version")
	}
	var n uint16
	if !s.ReadUint16(&n) {
		return nil, errors.New("gossip keyring: truncated")
	}
	if n > maxGossipKeyring || int(n) > len(s)/(GossipKeySize+2) {
		return nil, fmt.Errorf("gossip keyring: count %d does not fit the data", n)
	}
	out := make([]GossipKeyEntry, 0, n)
	for i := range int(n) {
		var e GossipKeyEntry
		var nb cryptobyte.String
		if !s.CopyBytes(e.Key[:]) || !s.ReadUint16LengthPrefixed(&nb) {
			return nil, fmt.Errorf("gossip keyring: entry %d: truncated", i)
		}
		notice, err := ParseGossipKeyNotice(nb)
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: entry %d: %w", i, err)
		}
		if GossipKeyID(e.Key) != notice.KeyID {
			return nil, fmt.Errorf("gossip keyring: entry %d (epoch %d): %w", i, notice.Epoch, ErrGossipKeyMismatch)
		}
		if i > 0 && notice.Epoch <= out[i-1].Notice.Epoch {
			return nil, fmt.Errorf("gossip keyring: entry %d: epoch %d after epoch %d", i, notice.Epoch, out[i-1].Notice.Epoch)
		}
		e.Notice = notice
		out = append(out, e)
	}
	if err := wireEnd(true, s); err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	return out, nil
}

// Save writes the rotated keys to path atomically, 0600.
func (r *GossipKeyring) Save(path string) error {
	return WriteFileAtomic(path, MarshalGossipKeyring(r.entries), 0o600)
}

// LoadGossipKeyring reads m's keyring file; a missing file is a ring at
// epoch 0. A file that does not parse, a notice the mesh CA did not sign
// or a file others may read is an error naming the file, and the file is
// left as it is.
func LoadGossipKeyring(path string, m *Member) (*GossipKeyring, error) {
	r := NewGossipKeyring(m)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	if err := checkPrivate(path, fi); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	entries, err := ParseGossipKeyring(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, e := range entries {
		if err := e.Notice.Verify(m.Trust); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	r.entries = entries
	return r, nil
}
