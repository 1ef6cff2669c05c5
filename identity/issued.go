package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"
)

// Issued is the CA holder's record of the tickets it issued that have not
// expired, persisted at path (0600) and locked against other processes.
//
// The member table cannot stand in for it: discovery forgets a member
// that has been away for a few days, while its ticket stays valid for
// months, and a member coming back with that ticket must find its name
// (and its WireGuard key) still its own. So a name and a WireGuard key
// stay reserved for the identity of every unexpired ticket, unless that
// identity is revoked.
type Issued struct {
	path string
	mu   sync.Mutex
}

type issuedRecord struct {
	Name      string          `json:"name"`
	Node      NodePublic      `json:"node"`
	WireGuard WireGuardPublic `json:"wireguard"`
	NotAfter  time.Time       `json:"not_after"`
	// Roles are the ticket's roles (absent in records written before core
	// members: those count as not core).
	Roles Roles `json:"roles,omitempty"`
}

// maxIssuedFile bounds what a load reads (a record is ~200 bytes).
const maxIssuedFile = 32 << 20

// OpenIssued returns the record at path (it need not exist yet).
func OpenIssued(path string) *Issued { return &Issued{path: path} }

// Record notes t as issued, replacing any earlier ticket of the same
// identity and forgetting expired ones.
func (s *Issued) Record(t *Ticket, now time.Time) error {
	return s.update(func(recs []issuedRecord) ([]issuedRecord, error) {
		recs = slices.DeleteFunc(recs, func(r issuedRecord) bool { return r.Node == t.Node || !now.Before(r.NotAfter) })
		return append(recs, issuedRecord{Name: t.Name, Node: t.Node, WireGuard: t.WireGuard, NotAfter: t.NotAfter.UTC(), Roles: t.Roles}), nil
	})
}

// Conflict reports why identity node may not be issued a ticket for name
// and WireGuard key wg: another identity that is not revoked holds an
// unexpired ticket for that name or that key, or node holds one under
// another name. It returns "" when nothing conflicts.
func (s *Issued) Conflict(name string, node NodePublic, wg WireGuardPublic, now time.Time, revoked func(NodePublic) bool) (string, error) {
	var why string
	err := s.update(func(recs []issuedRecord) ([]issuedRecord, error) {
		for _, r := range recs {
			if !now.Before(r.NotAfter) || (revoked != nil && revoked(r.Node)) {
				continue
			}
			switch {
			case r.Node == node && r.Name != name:
				why = fmt.Sprintf("identity %s holds an unexpired ticket as %q (until %s)", node.ShortString(), r.Name, r.NotAfter.Format(time.RFC3339))
			case r.Node == node:
				continue // its own ticket: a rejoin under the same name
			case r.Name == name:
				why = fmt.Sprintf("name %q is reserved by an unexpired ticket of identity %s (until %s)", name, r.Node.ShortString(), r.NotAfter.Format(time.RFC3339))
			case r.WireGuard == wg:
				why = fmt.Sprintf("WireGuard key %s is in the unexpired ticket of member %q", wg, r.Name)
			default:
				continue
			}
			return nil, nil
		}
		return nil, nil // no change
	})
	return why, err
}

// CoreHolders returns the identities holding an unexpired core ticket
// (RoleCore) in the record, revoked ones left out: the core set as this
// CA holder issued it, which admission keeps below the mesh's maximum.
func (s *Issued) CoreHolders(now time.Time, revoked func(NodePublic) bool) (map[NodePublic]bool, error) {
	out := map[NodePublic]bool{}
	err := s.update(func(recs []issuedRecord) ([]issuedRecord, error) {
		for _, r := range recs {
			if r.Roles.Has(RoleCore) && now.Before(r.NotAfter) && (revoked == nil || !revoked(r.Node)) {
				out[r.Node] = true
			}
		}
		return nil, nil // no change
	})
	return out, err
}

// update runs fn on the records under the in-process mutex and the file
// lock; a non-nil result is written back atomically.
func (s *Issued) update(fn func([]issuedRecord) ([]issuedRecord, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	lock, err := lockFile(s.path + ".lock")
	if err != nil {
		return fmt.Errorf("issued tickets: %w", err)
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
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("issued tickets: %w", err)
	}
	return WriteFileAtomic(s.path, append(b, '\n'), 0o600)
}

func (s *Issued) read() ([]issuedRecord, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("issued tickets: %w", err)
	}
	return parseIssued(b, s.path)
}

// parseIssued decodes the file's contents; errors name path.
func parseIssued(b []byte, path string) ([]issuedRecord, error) {
	if len(b) > maxIssuedFile {
		return nil, fmt.Errorf("issued tickets file %s: %d bytes is too large", path, len(b))
	}
	var recs []issuedRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("issued tickets file %s is corrupt: %w", path, err)
	}
	return recs, nil
}
