package mesh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// RevokedError means this node has been revoked from its mesh: New
// returns it for a revoked state directory, and Run returns it when the
// node learns of its revocation while it runs. errors.Is(err, ErrRevoked)
// holds.
type RevokedError struct {
	Name       string // this node's name
	Revocation *identity.Revocation
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("this node (%s) has been %s", e.Name, e.Revocation.Summary())
}

// Is makes a RevokedError an ErrRevoked.
func (e *RevokedError) Is(target error) bool { return target == ErrRevoked }

// Revoke revokes a member (admin nodes only): target is its name or its
// node key in text form. The revocation is signed with the mesh CA,
// persisted, handed to gossip (which tells the revoked member too) and
// applied here at once: no WireGuard peer, no NATS route or client, and
// the member leaves the JetStream meta group. Revoking a member that is
// revoked already signs nothing and returns the record that holds, with
// Already set.
func (n *Node) Revoke(target, reason string) (api.Revoked, error) {
	if n.member.CA == nil {
		return api.Revoked{}, fmt.Errorf("this node (%s) does not hold the mesh CA and cannot revoke members%s", n.Name(), n.adminHint())
	}
	if n.disc == nil {
		return api.Revoked{}, errors.New("the node is not running yet")
	}
	r, already, err := signRevocation(n.member, n.revs, n.disc.Members(), target, reason, time.Now())
	if err != nil {
		return api.Revoked{}, err
	}
	if !already {
		if err := n.disc.Revoke(r); err != nil {
			return api.Revoked{}, err
		}
		n.log.Warn("member revoked", "member", r.Name, "node", r.Node.ShortString(), "reason", r.Reason)
		// After the record went out (sealed with the key the revoked
		// box still holds, so that it hears of its revocation too): a
		// new gossip key, so that its copy opens nothing once the old
		// one retires.
		n.rotateGossipKey("revoked " + r.Name)
	}
	// Discovery's change event would do the same a moment later; doing it
	// here means the WireGuard peer is gone before the CLI hears back.
	n.reconcile()
	n.kickEvict()
	return revokedEntry(r, n.member.Trust, already), nil
}

// RevokeOffline revokes a member on the state directory of an admin node
// whose daemon is not running: the record is added to the revocations
// file, and the daemon gossips it when it next starts, and then rotates
// the gossip key (rotateIfDue). Names are looked up in the persisted
// member table.
func RevokeOffline(dir identity.StateDir, target, reason string, now time.Time) (api.Revoked, error) {
	m, err := dir.LoadMember(now)
	if err != nil {
		return api.Revoked{}, err
	}
	if m.CA == nil {
		return api.Revoked{}, fmt.Errorf("this node (%s) does not hold the mesh CA (no %s) and cannot revoke members: run revoke on an admin node", m.Ticket.Name, dir.CAKeyPath())
	}
	revs, err := identity.LoadRevocations(dir.RevocationsPath(), m.Trust)
	if err != nil {
		return api.Revoked{}, err
	}
	members, err := discovery.ReadMembers(dir.MembersPath(), m.Trust, revs, now)
	if err != nil {
		return api.Revoked{}, err
	}
	// The file holds the others; this node answers to its own name too,
	// so that revoking it by name gets the right refusal.
	members = append(members, discovery.Member{Name: m.Ticket.Name, Node: m.ID.Public(), Self: true})
	r, already, err := signRevocation(m, revs, members, target, reason, now)
	if err != nil {
		return api.Revoked{}, err
	}
	if !already {
		if _, err := revs.Add(r); err != nil {
			return api.Revoked{}, err
		}
		if err := revs.Save(dir.RevocationsPath()); err != nil {
			return api.Revoked{}, fmt.Errorf("revocation of %s not saved: %w", target, err)
		}
	}
	return revokedEntry(r, m.Trust, already), nil
}

// RevokedSelf reports whether the node of state directory dir knows
// that it has been revoked, and by which record; it reads only the seed,
// the CA certificate and the revocations file, so it answers for a node
// whose ticket has expired too.
func RevokedSelf(dir identity.StateDir) (*identity.Revocation, error) {
	seed, err := identity.LoadSeed(dir.SeedPath())
	if err != nil {
		return nil, err
	}
	trust, err := identity.LoadTrust(dir.CACertPath())
	if err != nil {
		return nil, err
	}
	revs, err := identity.LoadRevocations(dir.RevocationsPath(), trust)
	if err != nil {
		return nil, err
	}
	r, _ := revs.Get(identity.FromSeed(seed).Public())
	return r, nil
}

// signRevocation resolves target against members and signs its
// revocation with m's CA, named after the member and after m (the
// issuer). A target revoked already returns its record and true. An
// admin never revokes itself: it would be signing the order to stop
// itself, and the revocation might never leave the box.
func signRevocation(m *identity.Member, revs *identity.RevocationSet, members []discovery.Member, target, reason string, now time.Time) (*identity.Revocation, bool, error) {
	name, node, err := resolveTarget(target, members)
	if err != nil {
		return nil, false, err
	}
	if node == m.ID.Public() {
		return nil, false, fmt.Errorf("%s is this node: an admin does not revoke itself; run revoke on another admin node", target)
	}
	if r, ok := revs.Get(node); ok {
		return r, true, nil
	}
	r, err := m.CA.RevokeMember(identity.RevokeRequest{Node: node, Name: name, Issuer: m.Ticket.Name, Reason: reason}, now)
	if err != nil {
		return nil, false, err
	}
	return r, false, nil
}

// resolveTarget turns a member name or a node key (text form) into the
// member's name and key. A key need not be in the table (a member long
// forgotten can still be revoked); a name must be.
func resolveTarget(target string, members []discovery.Member) (string, identity.NodePublic, error) {
	if k, err := identity.ParseNodePublic(target); err == nil {
		for _, m := range members {
			if m.Node == k {
				return m.Name, k, nil
			}
		}
		return "", k, nil
	}
	var names []string
	for _, m := range members {
		if m.Name == target {
			return m.Name, m.Node, nil
		}
		if !m.Self {
			names = append(names, m.Name)
		}
	}
	slices.Sort(names)
	known := "none"
	if len(names) > 0 {
		known = strings.Join(names, ", ")
	}
	return "", identity.NodePublic{}, fmt.Errorf("no member named %q (members: %s); a node key (node:<64 hex digits>) is accepted too", target, known)
}

// revokedEntry is r as the local API shows it.
func revokedEntry(r *identity.Revocation, trust *identity.Trust, already bool) api.Revoked {
	return api.Revoked{
		Name: r.Name, Node: r.Node, Addr: identity.OverlayAddr(trust.Prefix(), r.Node),
		Time: r.Time, Issuer: r.Issuer, Reason: r.Reason, Already: already,
	}
}

// adminHint names an admin member for an error message, or says nothing.
func (n *Node) adminHint() string {
	for _, m := range n.plan.Load().Members {
		if m.Roles.Has(identity.RoleAdmin) {
			return fmt.Sprintf("; run it on admin member %q", m.Name)
		}
	}
	return ""
}

// selfRevoked returns a RevokedError once this node's own revocation has
// reached it (from gossip: every member sends it the record before it
// blocks it).
func (n *Node) selfRevoked() *RevokedError {
	r, ok := n.revs.Get(n.member.ID.Public())
	if !ok {
		return nil
	}
	return &RevokedError{Name: n.Name(), Revocation: r}
}

func (n *Node) kickEvict() {
	select {
	case n.evictKick <- struct{}{}:
	default:
	}
}

// evictLoop takes revoked members out of the JetStream meta group
// ($JS.API.SERVER.REMOVE), so that they stop counting toward quorum and
// the meta leader re-places their stream replicas on the remaining
// members. It runs on every node and acts on admins and on the meta
// leader: an admin signed the revocation, and the leader answers the
// request anyway. It retries every ReconcileInterval until the revoked
// server is gone from the group, since the meta leader may be the revoked
// node itself, or be re-elected meanwhile.
func (n *Node) evictLoop(ctx context.Context) {
	tick := time.NewTicker(defaults.ReconcileInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.evictKick:
		case <-tick.C:
		}
		n.evictRevoked()
	}
}

func (n *Node) evictRevoked() {
	if n.revs.Len() == 0 || n.nats == nil {
		return
	}
	leader, peers, err := n.nats.MetaGroup()
	if err != nil || (n.member.CA == nil && leader != n.Name()) {
		return
	}
	// A name held by a current member is never removed: names are
	// unique among members, and a new box may have been given the name
	// of one revoked long ago.
	current := map[string]bool{n.Name(): true}
	for _, m := range n.plan.Load().Members {
		current[m.Name] = true
	}
	for _, r := range n.revs.List() {
		if r.Name == "" || current[r.Name] || !slices.Contains(peers, r.Name) {
			continue
		}
		if err := n.nats.RemovePeer(r.Name); err != nil {
			n.log.Warn("revoked member not yet out of the JetStream meta group; retrying", "member", r.Name, "err", err)
			continue
		}
		n.log.Info("revoked member removed from the JetStream meta group", "member", r.Name)
	}
}
