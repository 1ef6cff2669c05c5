// Package discovery owns how meshnode members find each other: memberlist
// gossip inside the overlay, the signed node meta every member advertises,
// admission of gossiped nodes against the mesh CA, the member table and its
// change events, the persisted member list and the rejoin loop, and
// revocation gossip, and the gossip keyring: memberlist's keys kept on the
// rotation schedule, key notices gossiped like revocations, and the
// pending-key signal the node answers by fetching the key (gossipkeys.go).
// Enrollment (join and hello on the underlay) is the
// subpackage enroll, which reads and adds to this member table.
//
// Contract with the node (mesh.Node):
//
//   - New(cfg) loads the persisted table without touching the network;
//     Members() then lists it, this node included (Self), and Known()
//     every other member in any state: configure them as WireGuard peers
//     before Start, because gossip runs over the overlay and cannot reach
//     anyone before that.
//   - Start binds gossip on the overlay address and keeps joining known
//     members that are not alive (with backoff) until it sees them all.
//   - Changes() signals (coalesced, capacity 1) that Members() changed.
//     Members in any state stay WireGuard peers (the rejoin loop needs
//     them); only StateAlive members are NATS routes. Revoked members
//     vanish from the table at once and their gossip is dropped. memberlist
//     exposes no suspicion events, so there is no "suspect" state.
//   - Admit puts a member the enrollment endpoint let in (a signed join or
//     hello request) into the table before gossip sees it: StateUnknown,
//     no meta, the endpoints of its request. NameTaken keeps names unique.
//   - A newcomer receives the admitting node's table as signed records
//     (EncodeRecords on one side, DecodeRecords re-verifying them on the
//     other), stores it with WriteMembers, and starts like any member.
//
// Node meta is the CA-signed ticket plus a part the node signs itself
// (endpoints, NATS ports, extra routes, a sequence number, a leaving flag);
// see meta.go for the wire format. A node is admitted only when its ticket
// is signed by the mesh CA, valid and not revoked, its meta is signed by
// its identity, and its gossip name and address are the ones its ticket
// implies (admit.go). Rejections are logged once per node and reason and
// counted (Rejections). Revocations travel as gossip broadcasts and in
// every push/pull exchange, so a member that was away learns them when it
// is back. The member table, its records and the persisted file are in
// member.go.
//
// Gossip runs over the transport Config.Transport makes (transport.go):
// memberlist's UDP/TCP by default, the in-memory network of the test-only
// subpackage memtransport in simulations; the revoked-address filter wraps
// either.
//
// Nothing here imports the WireGuard device, NATS or enrollment: discovery
// emits member changes and the node acts on them.
package discovery
