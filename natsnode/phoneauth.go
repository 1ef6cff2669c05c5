package natsnode

import (
	"slices"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/meshnode/meshnode/identity"
)

// RolePhone is a phone: it may publish and subscribe only to the subjects
// its CA-signed phone ticket grants (Config.PhoneGrant), and answer the
// requests it receives. Phones prove their nkey like members do; the
// grant is read when the connection authenticates.
const RolePhone Role = RoleAdmin + 1

// PhoneGrant is what a phone may use on the bus: allow lists, nothing
// else. An empty list allows nothing.
type PhoneGrant struct {
	Pub, Sub []string
}

// permissionsFor is the nats-server permissions of an authenticated
// connection.
func (s *Server) permissionsFor(ac authConn) *server.Permissions {
	if ac.leaf {
		return leafPermissions(ac.role)
	}
	if ac.role != RolePhone {
		return permissions(ac.role)
	}
	var g PhoneGrant
	if s.cfg.PhoneGrant != nil {
		g = s.cfg.PhoneGrant(ac.node)
	}
	return phonePermissions(g)
}

// phonePermissions turns a grant into allow lists. nats-server reads a
// nil Allow as "everything", so an empty grant is an explicit deny of
// ">" rather than an empty list that a later refactor could turn nil.
func phonePermissions(g PhoneGrant) *server.Permissions {
	side := func(allow []string) *server.SubjectPermission {
		if len(allow) == 0 {
			return &server.SubjectPermission{Allow: []string{}, Deny: []string{">"}}
		}
		return &server.SubjectPermission{Allow: slices.Clone(allow), Deny: withDomainAPI([]string{"$SYS.>", "$JS.API.>", server.JSAuditAdvisory})}
	}
	return &server.Permissions{
		Publish:   side(g.Pub),
		Subscribe: side(g.Sub),
		// Replies to requests the phone received, once each, for as long
		// as nats-server's allow_responses default: a phone can serve
		// requests on its subjects without a grant on every inbox.
		Response: &server.ResponsePermission{
			MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS,
			Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION,
		},
	}
}

// PhoneGrantOf is a Config.PhoneGrant for a phone ticket lookup.
func PhoneGrantOf(lookup func(identity.NodePublic) (*identity.PhoneTicket, bool)) func(identity.NodePublic) PhoneGrant {
	return func(k identity.NodePublic) PhoneGrant {
		t, ok := lookup(k)
		if !ok {
			return PhoneGrant{}
		}
		return PhoneGrant{Pub: t.Pub, Sub: t.Sub}
	}
}
