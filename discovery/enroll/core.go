package enroll

import (
	"time"

	"github.com/meshnode/meshnode/identity"
)

// coreRole decides whether a newcomer's ticket carries identity.RoleCore:
// the admitting CA holder records the core set in the tickets it issues,
// so every member agrees on it (mesh.CoreSet reads it back).
//
// A core ticket is granted while fewer than MeshParams.MaxCore identities
// hold one, counting the unexpired, unrevoked core tickets in this node's
// register of issued tickets, this node's own ticket, and every member of
// the table whose ticket carries the role (another admin may have issued
// it). An identity that holds a core ticket already keeps it (a join
// retried after a lost answer gets the same admission).
//
// A mesh made before core members has no core ticket at all, not even
// the CA holder's own: it never grants one, so it stays the full NATS
// mesh it was (all members core). Invites cannot ask for the role: it is
// the CA's decision alone.
func (s *Server) coreRole(node identity.NodePublic, now time.Time) (bool, error) {
	max := s.cfg.Mesh.MaxCore
	if max <= 0 {
		return false, nil
	}
	holders := map[identity.NodePublic]bool{}
	self := s.cfg.Member
	if self.Ticket.Roles.Has(identity.RoleCore) {
		holders[self.ID.Public()] = true
	}
	for _, m := range s.cfg.Members.Members() {
		if m.Roles.Has(identity.RoleCore) && !s.cfg.Revocations.IsRevoked(m.Node) {
			holders[m.Node] = true
		}
	}
	if len(holders) == 0 {
		return false, nil // a mesh from before core members: all core
	}
	if s.cfg.Issued != nil {
		issued, err := s.cfg.Issued.CoreHolders(now, s.cfg.Revocations.IsRevoked)
		if err != nil {
			return false, err
		}
		for k := range issued {
			holders[k] = true
		}
	}
	if holders[node] {
		return true, nil
	}
	return len(holders) < max, nil
}
