package enroll

import (
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
)

// ownTicket answers GET /v2/ticket with this node's ticket: the WireGuard
// key a newcomer proves its own key toward, bound by the CA to the
// identity whose certificate the TLS connection presented. Only a node
// that admits (holds the CA) answers; the others have no use for it, and
// an endpoint open to the underlay should say as little as it can.
func (s *Server) ownTicket() (any, *apiError) {
	m := s.cfg.Member
	if m.CA == nil {
		return nil, fail(http.StatusMisdirectedRequest, CodeNoCA, "this node (%s) does not hold the mesh CA and cannot admit members; join through a member that does", m.Ticket.Name)
	}
	return ticketResponse{Ticket: m.Ticket.Marshal()}, nil
}

// checkJoinKeys refuses a join whose keys are not the newcomer's own or
// are in use already. The WireGuard key does not derive from the identity
// key, so the identity signature cannot vouch for it: the proof (an HMAC
// under the X25519 secret between the newcomer's WireGuard key and ours)
// shows that the newcomer holds its private half. A WireGuard key held by
// another member, or by this node, is refused even with a proof (a copied
// seed or key file): two peers with one key freeze every node's WireGuard
// reconcile, and the second holder could take the first one's traffic.
// So is an identity that is a member under another name (a copied state
// directory): one identity has one overlay address, which one name holds.
//
// Names and keys of unexpired tickets this node issued stay reserved for
// their identity also after the member table forgot it (ServerConfig.Issued).
func (s *Server) checkJoinKeys(req *joinRequest, now time.Time) *apiError {
	self := s.cfg.Member
	if !self.ID.VerifyWireGuardProof(req.WireGuard, joinProofDomain, req.signed(), req.WireGuardProof) {
		return fail(http.StatusBadRequest, CodeBadProof,
			"join request for %q does not prove its WireGuard key %s (proof toward %s's key %s): the newcomer must hold the key's private half",
			req.Name, req.WireGuard, self.Ticket.Name, self.ID.WireGuardPublic())
	}
	if req.WireGuard == self.ID.WireGuardPublic() || req.Node == self.ID.Public() {
		return fail(http.StatusConflict, CodeKeyTaken, "join request for %q carries this node's (%s) own keys: a copied state directory?", req.Name, self.Ticket.Name)
	}
	for _, m := range s.cfg.Members.Members() {
		switch {
		case m.WireGuard == req.WireGuard && m.Node != req.Node:
			return fail(http.StatusConflict, CodeKeyTaken, "WireGuard key %s is already used by member %q", req.WireGuard, m.Name)
		case m.Node == req.Node && m.Name != req.Name:
			return fail(http.StatusConflict, CodeKeyTaken, "identity %s is already member %q and cannot join again as %q", req.Node.ShortString(), m.Name, req.Name)
		}
	}
	if s.cfg.Issued == nil {
		return nil
	}
	why, err := s.cfg.Issued.Conflict(req.Name, req.Node, req.WireGuard, now, s.cfg.Revocations.IsRevoked)
	switch {
	case err != nil:
		return fail(http.StatusInternalServerError, CodeInternalError, "%v", err)
	case strings.HasPrefix(why, "name "):
		return fail(http.StatusConflict, CodeNameTaken, "%s", why)
	case why != "":
		return fail(http.StatusConflict, CodeKeyTaken, "%s", why)
	}
	return nil
}

// reserve records the ticket about to be handed out, before the token is
// spent: a record that cannot be written must not cost the newcomer its
// token. If the redeem then fails, the record reserves the name for an
// identity that got no ticket, which only that identity can use: it may
// retry.
func (s *Server) reserve(t *identity.Ticket, now time.Time) *apiError {
	if s.cfg.Issued == nil {
		return nil
	}
	if err := s.cfg.Issued.Record(t, now); err != nil {
		return fail(http.StatusInternalServerError, CodeInternalError, "%v", err)
	}
	return nil
}

// checkDialable refuses endpoints that members must not be told to dial
// (discovery.CheckDialable) unless the mesh is a lab (Mesh.LabEndpoints):
// the member table this node keeps hands them to every other member.
func (s *Server) checkDialable(eps []netip.AddrPort) *apiError {
	if s.cfg.Mesh.LabEndpoints {
		return nil
	}
	if err := discovery.CheckDialable(eps, s.cfg.Member.Trust.Prefix()); err != nil {
		return fail(http.StatusBadRequest, CodeMalformed, "%v (this mesh is not configured for a lab: lab_endpoints)", err)
	}
	return nil
}
