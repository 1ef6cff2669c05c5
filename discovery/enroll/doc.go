// Package enroll is meshnode's enrollment protocol: how a newcomer holding
// a one-time token becomes a member (join), and how a member that every
// other member has forgotten is let back in (hello). It runs on the
// underlay, before the newcomer has any WireGuard peer, as JSON over HTTPS;
// wire.go has the format and its versioning.
//
//   - Join (client.go) pins the admitting node's TLS to the CA fingerprint
//     in the token before it sends anything, sends a request signed by the
//     new identity (binding its WireGuard key and endpoints to the token),
//     and verifies the whole answer: CA, ticket, node certificate, route
//     secret and every member record. It writes nothing; the caller
//     (mesh.Join) stores the result.
//   - Hello proves a ticket's identity by signing a fresh, single-use
//     challenge (challenge.go). FetchGossipKey does the same to be handed
//     the mesh's current gossip key (only inside TLS, only to a valid,
//     unrevoked ticket), checked against its CA-signed notice. A refusal
//     of a revoked identity carries the CA-signed record (Revoked).
//   - Server (server.go) is the endpoint. A member holding the CA admits
//     newcomers; any member answers hello, and answers a join with the
//     name of an admin member to ask instead. Requests are decoded
//     strictly (decode.go); every check runs before anything changes, so
//     a refusal (4xx with a stable Code*) leaves no trace and a token is
//     spent only by an admission. Refusals are counted per source address
//     and rate limited (limiter.go); GET /v2/ticket, exempt from that
//     limit so that a valid token always gets through, has a bucket of
//     its own.
//
// The member table belongs to discovery: the server reads and adds to it
// through the Members interface (a *discovery.Discovery), and the answer
// carries discovery's signed member records, verified on arrival with
// discovery.DecodeRecords. The dependency runs one way: discovery knows
// nothing of enrollment.
package enroll
