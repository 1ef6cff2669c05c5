package natsnode

import (
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// Role is what an authenticated client may do on the bus. It is decided
// once per connection, when the connection authenticates: nats-server
// attaches permissions to a connection only then (client.RegisterUser), so
// a member whose role changes is disconnected (see clientAuth) and
// reconnects with the new one.
type Role uint8

const (
	// RoleNone is refused. The zero value, so a forgotten case refuses.
	RoleNone Role = iota
	// RoleMember may use the shared subject space and JetStream's data
	// plane, but not administer JetStream or read the system account.
	RoleMember
	// RoleAdmin may do everything, like the node's own in-process
	// connections.
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleMember:
		return "member"
	case RoleAdmin:
		return "admin"
	case RolePhone:
		return "phone"
	}
	return "none"
}

// memberDeny is what an ordinary member may not publish. Everything else
// is allowed: the mesh shares one subject space, and nats-server has no
// "allow everything except $-subjects" other than allow-all plus a deny
// list.
//
// Why a deny list, and why members cannot create consumers at all:
// nats-server checks the allow list first and then the deny list, and a
// deny match always refuses (client.go pubAllowedFullCheck), so a
// connection allowed ">" can never be given back a part of a denied
// family. "Create and delete only your own consumers" would need the
// family $JS.API.CONSUMER.CREATE.> denied except for the member's own
// names, which is not expressible; nor are partial-token wildcards such as
// "NAME-*" (permissions match whole tokens). TestTrapDenyBeatsNarrowerAllow
// pins this. Members therefore use consumers an admin (or a node's own
// service) creates: they may read them and pull from and ack them.
//
// The JetStream families mirror nats-server's own dispatch table
// (jetstream_api.go, the mutating "pairs" of setJetStreamExportSubs, plus
// the cluster-wide META/SERVER/ACCOUNT requests); the read-only ones stay
// open: $JS.API.INFO, STREAM.NAMES/LIST/INFO, STREAM.MSG.GET, DIRECT.GET,
// CONSUMER.NAMES/LIST/INFO and CONSUMER.MSG.NEXT, and the data plane
// ($JS.ACK.>, $JS.FC.>, stream subjects, _INBOX.>).
//
// Every $JS.API entry is denied under the core's domain prefix too
// (withDomainAPI): a leaf server maps its clients' $JS.API.X to
// $JS.<JetStreamDomain>.API.X before it checks their permissions, and the
// core checks a leaf connection's publishes on that wire subject before
// mapping it back (leafMsgAllowed), so the plain entries alone would let
// a member on a leaf box delete streams (TestLeafUsesCoreJetStream).
var memberDeny = append(withDomainAPI([]string{
	"$SYS.>",

	server.JSApiStreamCreate,
	server.JSApiStreamUpdate,
	server.JSApiStreamDelete,
	server.JSApiStreamPurge,
	server.JSApiStreamSnapshot,
	server.JSApiStreamRestore,
	server.JSApiMsgDelete,
	server.JSApiStreamCancelMove,
	"$JS.API.STREAM.PEER.>",   // remove, evacuate
	"$JS.API.STREAM.LEADER.>", // step down

	"$JS.API.CONSUMER.CREATE.>", // new style (named, filtered) and legacy ephemeral
	"$JS.API.CONSUMER.DURABLE.>",
	"$JS.API.CONSUMER.DELETE.>",
	"$JS.API.CONSUMER.PAUSE.>",
	"$JS.API.CONSUMER.UNPIN.>",
	"$JS.API.CONSUMER.RESET.>",
	"$JS.API.CONSUMER.PEER.>",
	"$JS.API.CONSUMER.LEADER.>",

	"$JS.API.META.>",    // leader step down, rescue
	"$JS.API.SERVER.>",  // remove, evacuate
	"$JS.API.ACCOUNT.>", // purge, stream move

	"$JS.SNAPSHOT.>", // snapshot acks and restore chunks
}), ReleaseSubjects...)

// ReleaseSubjects are the stream subjects of the published update release
// (mesh/updater's KV bucket and Object Store; its tests check the names)
// and the cue that tells every box to read it: only an admin may publish
// there. A member who could would install nothing (every box checks the
// CA's signature and every hash) but could replace the release with junk
// or an older one and stall a rollout, or make every box read at will.
var ReleaseSubjects = []string{"$KV.meshnode-update.>", "$O.meshnode-release.>", "meshnode.update.v1.released"}

// memberSubDeny is what an ordinary member may not subscribe to: the
// system account's subjects, and the JetStream API itself (a subscriber
// there sees every request and could answer one before the server does),
// under its plain and its domain prefix (on a leaf server the requests of
// its clients travel under the latter), and the API audit advisory, which
// nats-server publishes into the account for every API request with the
// request and the response in it (jetstream_api.go sendAPIResponse).
var memberSubDeny = withDomainAPI([]string{
	"$SYS.>",
	"$JS.API.>",
	server.JSAuditAdvisory,
})

// domainAPIPrefix is what a leaf server puts in place of $JS.API. in its
// clients' JetStream API subjects (see leafOptions).
const domainAPIPrefix = "$JS." + JetStreamDomain + ".API."

// withDomainAPI returns subjects plus, for each one under $JS.API., the
// same subject under domainAPIPrefix.
func withDomainAPI(subjects []string) []string {
	out := slices.Clone(subjects)
	for _, s := range subjects {
		if rest, ok := strings.CutPrefix(s, "$JS.API."); ok {
			out = append(out, domainAPIPrefix+rest)
		}
	}
	return out
}

// permissions returns the nats-server permissions for role; nil means
// unrestricted.
func permissions(r Role) *server.Permissions {
	if r != RoleMember {
		return nil
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: append([]string(nil), memberDeny...)},
		Subscribe: &server.SubjectPermission{Deny: append([]string(nil), memberSubDeny...)},
	}
}

// ClientPermissions and LeafPermissions are what a client connection and
// a leaf box's leaf connection of role r are given (nil: unrestricted),
// for code outside this package that must check it works under the same
// rights (mesh/updater's tests run its agent as a member and as a leaf
// box against plain nats-servers given these).
func ClientPermissions(r Role) *server.Permissions { return permissions(r) }

// LeafPermissions: see ClientPermissions.
func LeafPermissions(r Role) *server.Permissions { return leafPermissions(r) }

// leafSubDeny is what a leaf connection may not receive: $SYS, the
// plain JetStream API and its audit advisory, as for a member client (a
// leaf runs no JetStream, so it never sends the advisory the other
// way); nats-server adds $JS.API.>,
// $KV.> and $OBJ.> itself on a leaf connection between servers of
// differing JetStream domains (see leafOptions).
//
// Trap (nats-server 2.15): one subscribe list governs both directions of
// a leaf connection. The leaf server forwards its clients' JetStream
// requests because of the core's interest in them, and filters what it
// sends along that interest with the subscribe denies the core handed it
// (deliverMsg's deny filter); the core filters what it delivers to the
// leaf with the same list. Denying $JS.API.> here works only because a
// leaf's clients' requests cross the connection under the domain prefix
// ($JS.<JetStreamDomain>.API.>, the core's interest in its domain
// mappings), which must therefore stay open: denying it would cut the
// leaf's clients off JetStream. Nothing on the core delivers under that
// prefix: the core maps it to $JS.API on the way in, for clients and leaf
// connections alike (the parser's mapping runs before any delivery).
// TestLeafDoesNotSeeJetStreamAPI shows a leaf box receives neither a core
// client's nor another leaf's client's JetStream requests.
var leafSubDeny = []string{"$SYS.>", "$JS.API.>", server.JSAuditAdvisory}

// leafPermissions are the permissions of a leaf member's leaf connection
// on a core server, as seen from the leaf (nats-server reverses them
// inside the hub): a member publishes what a member client may (the
// admin JetStream API and $SYS are denied) and receives what leafSubDeny
// leaves. An admin's leaf is unrestricted, like an admin client.
func leafPermissions(r Role) *server.Permissions {
	if r != RoleMember {
		return nil
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: append([]string(nil), memberDeny...)},
		Subscribe: &server.SubjectPermission{Deny: append([]string(nil), leafSubDeny...)},
	}
}
