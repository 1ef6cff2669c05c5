package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"
)

// Join tokens are one-time invitations minted by a CA holder:
//
//	"mnj1-" + base32(lowercase, no padding) of
//	  CA fingerprint [32] | secret [32] | first 4 bytes of SHA-256(the 64 bytes before)
//
// The fingerprint lets the joiner pin the admitting node's certificate chain
// before it sends anything; the checksum catches a mistyped token before any
// network traffic. The CA holder stores only SHA-256(secret).
const tokenPrefix = "mnj1-"

var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Token errors; Check and Redeem wrap them with details.
var (
	ErrTokenMalformed = errors.New("join token is malformed")
	ErrTokenUnknown   = errors.New("join token is unknown")
	ErrTokenExpired   = errors.New("join token has expired")
	ErrTokenUsed      = errors.New("join token was already used")
	ErrTokenWrongMesh = errors.New("join token is for another mesh")
)

// Invite is a decoded join token.
type Invite struct {
	CAFingerprint [32]byte
	Secret        [32]byte
}

// String encodes the invite as a token.
func (iv Invite) String() string {
	b := make([]byte, 0, 68)
	b = append(b, iv.CAFingerprint[:]...)
	b = append(b, iv.Secret[:]...)
	sum := sha256.Sum256(b)
	b = append(b, sum[:4]...)
	return tokenPrefix + tokenEncoding.EncodeToString(b)
}

// ParseInvite decodes a token and says what is wrong with a bad one.
func ParseInvite(token string) (Invite, error) {
	token = strings.TrimSpace(token)
	body, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return Invite{}, fmt.Errorf("%w: does not start with %q", ErrTokenMalformed, tokenPrefix)
	}
	raw, err := tokenEncoding.DecodeString(strings.ToLower(body))
	if err != nil {
		return Invite{}, fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	if len(raw) != 68 {
		return Invite{}, fmt.Errorf("%w: %d bytes, want 68 (truncated?)", ErrTokenMalformed, len(raw))
	}
	sum := sha256.Sum256(raw[:64])
	if !bytes.Equal(sum[:4], raw[64:]) {
		return Invite{}, fmt.Errorf("%w: checksum mismatch (mistyped?)", ErrTokenMalformed)
	}
	var iv Invite
	copy(iv.CAFingerprint[:], raw[:32])
	copy(iv.Secret[:], raw[32:64])
	return iv, nil
}

// inviteRecord is what the CA holder keeps of a token: never the secret.
type inviteRecord struct {
	Hash    string    `json:"hash"` // hex SHA-256 of the secret
	Roles   roleBits  `json:"roles"`
	Expires time.Time `json:"expires"`
	UsedAt  time.Time `json:"used_at,omitzero"`
	UsedBy  string    `json:"used_by,omitempty"`
	// UsedNode and UsedName are the admission the token was redeemed for
	// (RedeemFor): the same identity asking again under the same name is
	// given the same admission, so that a join whose answer was lost can
	// be retried. Records redeemed before these fields existed have none
	// and stay plainly used.
	UsedNode NodePublic `json:"used_node,omitzero"`
	UsedName string     `json:"used_name,omitempty"`
}

// roleBits is Roles as the invites file has always stored them, a JSON
// number: Roles itself marshals as text, and files written before it did
// must still read.
type roleBits Roles

// Invites is the CA holder's store of outstanding join tokens, persisted
// atomically at path (0600) and locked against other processes (the CLI may
// mint a token while the daemon redeems one).
type Invites struct {
	path  string
	trust *Trust
	mu    sync.Mutex
}

// OpenInvites returns the store at path for the mesh of trust.
func OpenInvites(path string, trust *Trust) *Invites {
	return &Invites{path: path, trust: trust}
}

// forgetAfter is how long used or expired records are kept, so that "already
// used" and "expired" stay precise answers for a while.
const forgetAfter = 7 * 24 * time.Hour

// New mints a one-time token valid for ttl that admits a node with roles.
func (s *Invites) New(ttl time.Duration, roles Roles, now time.Time) (string, error) {
	if ttl <= 0 {
		return "", fmt.Errorf("invite ttl must be positive, got %s", ttl)
	}
	if roles&^knownRoles != 0 {
		return "", fmt.Errorf("unknown roles %#x", uint8(roles))
	}
	iv := Invite{CAFingerprint: s.trust.Fingerprint()}
	if _, err := rand.Read(iv.Secret[:]); err != nil {
		return "", fmt.Errorf("invite: %w", err)
	}
	err := s.update(func(recs []inviteRecord) ([]inviteRecord, error) {
		return append(recs, inviteRecord{Hash: secretHash(iv.Secret), Roles: roleBits(roles), Expires: now.Add(ttl).UTC()}), nil
	}, now)
	if err != nil {
		return "", err
	}
	return iv.String(), nil
}

// Check reports the roles a token grants without using it up, or why it
// cannot be used.
func (s *Invites) Check(token string, now time.Time) (Roles, error) {
	var roles Roles
	err := s.update(func(recs []inviteRecord) ([]inviteRecord, error) {
		i, err := s.find(recs, token, now)
		if err != nil {
			return nil, err
		}
		roles = Roles(recs[i].Roles)
		return nil, nil // no change
	}, now)
	return roles, err
}

// Redeem uses a token up: it succeeds once, then reports ErrTokenUsed.
func (s *Invites) Redeem(token, usedBy string, now time.Time) (Roles, error) {
	var roles Roles
	err := s.update(func(recs []inviteRecord) ([]inviteRecord, error) {
		i, err := s.find(recs, token, now)
		if err != nil {
			return nil, err
		}
		recs[i].UsedAt, recs[i].UsedBy = now.UTC(), usedBy
		roles = Roles(recs[i].Roles)
		return recs, nil
	}, now)
	return roles, err
}

// CheckFor is Check for the admission of node under name: a token that
// RedeemFor already spent on exactly that admission is good for it again
// (see RedeemFor); for anyone else it is used.
func (s *Invites) CheckFor(token string, node NodePublic, name string, now time.Time) (Roles, error) {
	var roles Roles
	err := s.update(func(recs []inviteRecord) ([]inviteRecord, error) {
		i, err := s.findFor(recs, token, node, name, now)
		if err != nil {
			return nil, err
		}
		roles = Roles(recs[i].Roles)
		return nil, nil
	}, now)
	return roles, err
}

// RedeemFor uses a token up for the admission of node under name. Asked
// again for the same node and name it succeeds again with the same roles
// and changes nothing: redeeming is idempotent for the identity that
// redeemed it, so a join whose answer was lost (a timeout, a reset, a crash
// between sending and receiving) can be retried with the same token and
// seed. Only that identity can ask: the join request is signed by it. The
// replay is possible for as long as the record is kept (forgetAfter after
// the first use), even past the token's own expiry, because the first use
// was in time. Any other identity or name gets ErrTokenUsed.
func (s *Invites) RedeemFor(token string, node NodePublic, name string, now time.Time) (Roles, error) {
	var roles Roles
	err := s.update(func(recs []inviteRecord) ([]inviteRecord, error) {
		i, err := s.findFor(recs, token, node, name, now)
		if err != nil {
			return nil, err
		}
		roles = Roles(recs[i].Roles)
		if !recs[i].UsedAt.IsZero() {
			return nil, nil // the same admission again: nothing to write
		}
		recs[i].UsedAt, recs[i].UsedBy = now.UTC(), name+" "+node.ShortString()
		recs[i].UsedNode, recs[i].UsedName = node, name
		return recs, nil
	}, now)
	return roles, err
}

// findFor is find that lets through a record already redeemed for node
// under name.
func (s *Invites) findFor(recs []inviteRecord, token string, node NodePublic, name string, now time.Time) (int, error) {
	i, err := s.find(recs, token, now)
	if !errors.Is(err, ErrTokenUsed) {
		return i, err
	}
	j := s.index(recs, token)
	if j >= 0 && !node.IsZero() && recs[j].UsedNode == node && recs[j].UsedName == name {
		return j, nil
	}
	return 0, err
}

// index is the position of token's record, or -1; the token parsed
// already (find ran first).
func (s *Invites) index(recs []inviteRecord, token string) int {
	iv, err := ParseInvite(token)
	if err != nil {
		return -1
	}
	h := secretHash(iv.Secret)
	for i, r := range recs {
		if subtle.ConstantTimeCompare([]byte(r.Hash), []byte(h)) == 1 {
			return i
		}
	}
	return -1
}

func (s *Invites) find(recs []inviteRecord, token string, now time.Time) (int, error) {
	iv, err := ParseInvite(token)
	if err != nil {
		return 0, err
	}
	if fp := s.trust.Fingerprint(); subtle.ConstantTimeCompare(fp[:], iv.CAFingerprint[:]) != 1 {
		return 0, fmt.Errorf("%w (it pins CA %x…, this node's mesh %q is %x…)", ErrTokenWrongMesh, iv.CAFingerprint[:4], s.trust.Mesh, fp[:4])
	}
	h := secretHash(iv.Secret)
	for i, r := range recs {
		if subtle.ConstantTimeCompare([]byte(r.Hash), []byte(h)) != 1 {
			continue
		}
		if !r.UsedAt.IsZero() {
			return 0, fmt.Errorf("%w (by %q at %s)", ErrTokenUsed, r.UsedBy, r.UsedAt.Format(time.RFC3339))
		}
		if !now.Before(r.Expires) {
			return 0, fmt.Errorf("%w (at %s)", ErrTokenExpired, r.Expires.Format(time.RFC3339))
		}
		return i, nil
	}
	return 0, ErrTokenUnknown
}

// update runs fn on the current records under the in-process mutex and an
// exclusive file lock; when fn returns a non-nil slice it is written back
// atomically (with long-dead records pruned).
func (s *Invites) update(fn func([]inviteRecord) ([]inviteRecord, error), now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	lock, err := lockFile(s.path + ".lock")
	if err != nil {
		return fmt.Errorf("invites: %w", err)
	}
	defer lock.Close()
	recs, err := s.read()
	if err != nil {
		return err
	}
	out, err := fn(recs)
	if err != nil || out == nil {
		return err
	}
	kept := out[:0]
	for _, r := range out {
		dead := r.Expires
		if !r.UsedAt.IsZero() {
			dead = r.UsedAt
		}
		if now.Sub(dead) < forgetAfter {
			kept = append(kept, r)
		}
	}
	b, err := json.MarshalIndent(kept, "", "  ")
	if err != nil {
		return fmt.Errorf("invites: %w", err)
	}
	return WriteFileAtomic(s.path, append(b, '\n'), 0o600)
}

func (s *Invites) read() ([]inviteRecord, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("invites: %w", err)
	}
	var recs []inviteRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("invites file %s is corrupt: %w", s.path, err)
	}
	return recs, nil
}

func secretHash(secret [32]byte) string {
	h := sha256.Sum256(secret[:])
	return hex.EncodeToString(h[:])
}
