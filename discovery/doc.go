// Package discovery owns how meshnode members find each other: memberlist
// gossip inside the overlay, the signed node meta every member advertises,
// admission of gossiped nodes against the mesh CA, the member table and its
// change events, the persisted member list and the rejoin loop, revocation
// gossip, and the enrollment endpoint (join and hello) on the underlay.
//
// Contract with the node (mesh.Node):
//
//   - New(cfg) loads the persisted table without touching the network;
//     Known() then lists every other member in any state: configure them
//     as WireGuard peers before Start, because gossip runs over the
//     overlay and cannot reach anyone before that.
//   - Start binds gossip on the overlay address and keeps joining known
//     members that are not alive (with backoff) until it sees them all.
//   - Changes() signals (coalesced, capacity 1) that Members() changed.
//     Members in any state stay WireGuard peers (the rejoin loop needs
//     them); only StateAlive members are NATS routes. Revoked members
//     vanish from the table at once and their gossip is dropped. memberlist
//     exposes no suspicion events, so there is no "suspect" state.
//   - Members known only from an enrollment (StateUnknown, no meta yet)
//     carry the endpoints of their signed join or hello request.
//   - The enrollment Server calls OnAdmit before it answers a newcomer,
//     and the newcomer is in Members() from then on.
//   - A newcomer calls Enroll, stores the enrollment with
//     identity.StateDir.SaveEnrollment and the member list with
//     WriteMembers, and starts like any member. A member that every other
//     member has forgotten (away longer than their retention) calls Hello
//     on a member's enrollment endpoint to be peered with again.
//
// Node meta is the CA-signed ticket plus a part the node signs itself
// (endpoints, NATS ports, extra routes, a sequence number, a leaving flag);
// see meta.go for the wire format. A node is admitted only when its ticket
// is signed by the mesh CA, valid and not revoked, its meta is signed by
// its identity, and its gossip name and address are the ones its ticket
// implies. Rejections are logged once per node and reason and counted
// (Rejections). Revocations travel as gossip broadcasts and in every
// push/pull exchange, so a member that was away learns them when it is
// back.
//
// The enrollment endpoint (enroll.go) is JSON over HTTPS: POST /v1/join,
// GET /v1/challenge, POST /v1/hello. Refusals are 4xx with a stable code
// (Code* constants) and change nothing; repeated refusals from one address
// are rate limited.
//
// Nothing here imports the WireGuard device or NATS: discovery emits member
// changes and the node acts on them.
package discovery
