package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// State is what this node currently believes about a member.
type State int

const (
	// StateUnknown: known from the persisted table or from an enrollment,
	// not yet seen by gossip since this node started.
	StateUnknown State = iota
	// StateAlive: gossip sees the member.
	StateAlive
	// StateDead: gossip lost the member (failed probes).
	StateDead
	// StateLeft: the member announced it was leaving and left.
	StateLeft
)

var stateNames = [...]string{"unknown", "alive", "dead", "left"}

func (s State) String() string {
	if int(s) < len(stateNames) && s >= 0 {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if string(b) == n {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("unknown member state %q", b)
}

// Member is one entry of the member table: everything the node needs to
// peer with a member over WireGuard and route NATS to it.
type Member struct {
	Name           string
	Node           identity.NodePublic
	WireGuard      identity.WireGuardPublic
	Addr           netip.Addr       // overlay address (from the ticket)
	Endpoints      []netip.AddrPort // underlay WireGuard endpoints
	NATSClientPort uint16
	NATSRoutePort  uint16
	Routes         []netip.Prefix // extra prefixes (phones behind a hub)
	Roles          identity.Roles
	State          State
	LastChange     time.Time
	Self           bool

	// TicketIssued is the ticket's NotBefore: when two members claim one
	// WireGuard key or overlay address, every node keeps the one with the
	// older ticket (mesh.NewPlan), so that all of them drop the same one.
	TicketIssued time.Time

	// The signed records the entry was built from, kept so that every
	// copy (file, enrollment answer) can be re-verified.
	ticket  []byte
	meta    []byte // nil for a member known only from an enrollment
	seq     uint64 // the meta's sequence number
	leaving bool   // the meta announces that the member is leaving
}

// record is a member as persisted and as sent to a newcomer: raw signed
// bytes plus what cannot be re-derived from them.
type record struct {
	Ticket     []byte           `json:"ticket"`
	Meta       []byte           `json:"meta,omitempty"`
	Endpoints  []netip.AddrPort `json:"endpoints,omitempty"` // only without meta
	State      State            `json:"state"`
	LastChange time.Time        `json:"last_change"`
}

func (m *Member) record() record {
	r := record{Ticket: m.ticket, Meta: m.meta, State: m.State, LastChange: m.LastChange.UTC()}
	if m.meta == nil {
		r.Endpoints = m.Endpoints
	}
	return r
}

// memberFrom builds a table entry from a verified ticket and meta (nil
// when the member is known only from an enrollment; endpoints then come
// from the signed join or hello request).
func memberFrom(t *identity.Ticket, md *meta, endpoints []netip.AddrPort) Member {
	m := Member{
		Name:      t.Name,
		Node:      t.Node,
		WireGuard: t.WireGuard,
		Addr:      t.Addr,
		Roles:     t.Roles,
		Endpoints: slices.Clone(endpoints),
		ticket:    t.Marshal(),

		TicketIssued: t.NotBefore,
	}
	if md != nil {
		m.Endpoints = slices.Clone(md.endpoints)
		m.Routes = slices.Clone(md.routes)
		m.NATSClientPort = md.natsClientPort
		m.NATSRoutePort = md.natsRoutePort
		m.meta = md.marshal()
		m.seq = md.seq
		m.leaving = md.leaving
	}
	return m
}

// clone returns a copy that shares nothing mutable with m.
func (m Member) clone() Member {
	m.Endpoints = slices.Clone(m.Endpoints)
	m.Routes = slices.Clone(m.Routes)
	return m
}

// verifyRecord re-verifies a record against the mesh CA: ticket valid and
// not revoked, meta (if any) signed by the ticket's identity and carrying
// the same ticket. A zero now skips the ticket's validity window (the CA
// signature still counts): KnownAdmins.
func verifyRecord(r record, trust *identity.Trust, revs *identity.RevocationSet, now time.Time) (Member, error) {
	t, err := identity.ParseTicket(r.Ticket)
	if err != nil {
		return Member{}, err
	}
	verify := func() error { return t.Verify(trust, now) }
	if now.IsZero() {
		verify = func() error { return t.VerifySignature(trust) }
	}
	if err := verify(); err != nil {
		return Member{}, err
	}
	if revs != nil && revs.IsRevoked(t.Node) {
		return Member{}, fmt.Errorf("member %q is revoked", t.Name)
	}
	var md *meta
	if r.Meta != nil {
		if md, err = parseMeta(r.Meta); err != nil {
			return Member{}, fmt.Errorf("member %q: %w", t.Name, err)
		}
		if !md.ticket.Equal(t) {
			return Member{}, fmt.Errorf("member %q: meta carries another ticket", t.Name)
		}
		if !md.verify() {
			return Member{}, fmt.Errorf("member %q: bad meta signature", t.Name)
		}
	} else if err := CheckEndpoints(r.Endpoints); err != nil {
		return Member{}, fmt.Errorf("member %q: %w", t.Name, err)
	}
	m := memberFrom(t, md, r.Endpoints)
	m.State, m.LastChange = r.State, r.LastChange
	return m, nil
}

// EncodeRecords encodes members as the signed records they were built from,
// a JSON array: the form in which an admitting node hands its member table
// to a newcomer. Entries not built by discovery (no ticket) are left out.
func EncodeRecords(members []Member) (json.RawMessage, error) {
	recs := []record{}
	for _, m := range members {
		if m.ticket != nil {
			recs = append(recs, m.record())
		}
	}
	b, err := json.Marshal(recs)
	if err != nil {
		return nil, fmt.Errorf("member records: %w", err)
	}
	return b, nil
}

// DecodeRecords parses records made by EncodeRecords and re-verifies each
// against the mesh CA. One record that does not verify fails them all: the
// sender vouched for every one, so the whole answer is suspect. Empty input
// is an empty table.
func DecodeRecords(b []byte, trust *identity.Trust, now time.Time) ([]Member, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var recs []record
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("member records: %w", err)
	}
	var out []Member
	for i, r := range recs {
		m, err := verifyRecord(r, trust, nil, now)
		if err != nil {
			return nil, fmt.Errorf("member %d: %w", i, err)
		}
		m.Self = false
		out = append(out, m)
	}
	return out, nil
}

// membersFile is the persisted member table.
type membersFile struct {
	Version int      `json:"version"`
	Members []record `json:"members"`
}

const membersFileVersion = 1

// maxMembersFile bounds what a load will read.
const maxMembersFile = 16 << 20

// readMembers loads and re-verifies the member table at path. A missing
// file is an empty table; an unreadable or corrupt one is an error naming
// it; a record that no longer verifies (expired, revoked) is dropped and
// reported through drop.
func readMembers(path string, trust *identity.Trust, revs *identity.RevocationSet, now time.Time, drop func(error)) ([]Member, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("member table: %w", err)
	}
	if len(b) > maxMembersFile {
		return nil, fmt.Errorf("member table %s: %d bytes is too large", path, len(b))
	}
	var f membersFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("member table %s is corrupt: %w", path, err)
	}
	if f.Version != membersFileVersion {
		return nil, fmt.Errorf("member table %s: unknown version %d (this build reads %d)", path, f.Version, membersFileVersion)
	}
	var out []Member
	for i, r := range f.Members {
		m, err := verifyRecord(r, trust, revs, now)
		if err != nil {
			drop(fmt.Errorf("%s: member %d: %w", path, i, err))
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// ReadMembers loads the member table persisted at path (a node's
// members file) without starting anything, for tools that work on a
// state directory while no daemon runs: records that no longer verify
// (expired, revoked in revs, which may be nil) are left out.
func ReadMembers(path string, trust *identity.Trust, revs *identity.RevocationSet, now time.Time) ([]Member, error) {
	return readMembers(path, trust, revs, now, func(error) {})
}

// WriteMembers writes a member table to path atomically, for example the
// list a newcomer received with its enrollment, so that its first Start
// knows whom to peer with and join.
func WriteMembers(path string, members []Member) error {
	f := membersFile{Version: membersFileVersion, Members: []record{}}
	for _, m := range members {
		if m.Self || m.ticket == nil {
			continue
		}
		f.Members = append(f.Members, m.record())
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("member table: %w", err)
	}
	return identity.WriteFileAtomic(path, append(b, '\n'), 0o644)
}

// KnownAdmins are the admin members in the persisted member table at path,
// expired tickets included: where a node whose own ticket ran out while it
// was off asks to renew. Its table's copies of the admins' tickets are as
// old as its own and may have run out too (the admins renewed theirs
// meanwhile), which does not change where the admins are. Records that do
// not verify otherwise, or are revoked, are left out.
func KnownAdmins(path string, trust *identity.Trust, revs *identity.RevocationSet) ([]Member, error) {
	all, err := readMembers(path, trust, revs, time.Time{}, func(error) {})
	if err != nil {
		return nil, err
	}
	var out []Member
	for _, m := range all {
		if m.Roles.Has(identity.RoleAdmin) {
			out = append(out, m)
		}
	}
	return out, nil
}
