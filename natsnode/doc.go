// Package natsnode owns the node's embedded nats-server (v2.15): its
// options, the route set built from mesh members, route and client
// authentication, TLS, and the JetStream bootstrap guard. It knows nothing
// of gossip or WireGuard: its caller (mesh.Node) hands it a member set and
// membership predicates.
//
// The contract the caller wires:
//
//   - New(Config) validates the configuration (the boot guard). A cluster
//     listening beyond loopback needs a route secret AND complete mutual
//     route TLS (a certificate, RootCAs, ClientCAs,
//     RequireAndVerifyClientCert and a fixed ServerName, as
//     identity.RouteTLS builds it); partial route TLS is an error anywhere.
//     JetStream needs explicit memory and store limits.
//   - Start(ctx) starts the server and blocks until it accepts connections
//     (bounded by ctx and StartTimeout). Server log lines go to the slog
//     logger with the route secret redacted; a Fatalf from the server (a
//     port in use, a JetStream start failure) becomes Start's error instead
//     of a hang or os.Exit. Exception: the bootstrap guard below.
//   - SetMembers([]Member) hands over the current member set (self may be
//     in it or not: self is always added). Every member becomes an explicit
//     route; the canonical URLs come from one function (routeURLs) and are
//     applied with ReloadOptions, debounced, off the caller's goroutine.
//   - Config.Authorize is asked on EVERY client connection, and again on
//     every route reload. Config.Role then gives the connection its
//     permissions (RoleAdmin: everything; RoleMember: the shared subject
//     space and JetStream's data plane, see memberDeny). Recheck() closes
//     open client connections whose identity is no longer authorized or
//     whose role changed, and accepted routes AllowRoute now refuses; the
//     caller calls it on each membership change and a ticker calls it
//     every RecheckInterval.
//   - Config.Cluster.AllowRoute is asked for every inbound route
//     connection with the remote address and the verified certificate the
//     route presented (mesh.Node wants both to name the same live member),
//     and again for every accepted route on each reload and Recheck, so a
//     member that leaves loses its routes at the next membership change
//     (as well as when the caller removes its WireGuard peer). Routes this
//     server dialled are never re-checked by nats-server; removing their
//     URL from the route set closes them.
//   - RemovePeer(name) takes a server out of the JetStream meta group.
//   - ConnectInProcess, ClientURL, Ready, Routes, Status and Shutdown serve
//     the node.
//
// Route authentication. In nats-server v2.15 a CustomRouterAuthentication
// REPLACES the cluster username/password check (isRouterAuthorized returns
// the custom result alone; TestTrapCustomRouterAuthReplacesRoutePassword
// pins this), so routeAuth checks the route secret itself, in constant
// time, as well as a verified certificate chain and the remote address.
// Route credentials travel as user info in the route URLs (the server
// sends a route URL's user info in its route CONNECT).
//
// Client authentication. A CustomClientAuthentication with
// AlwaysEnableNonce: the client's signature over the server nonce is
// verified against its nkey, the nkey is mapped to an identity key and
// Authorize is asked. Two internal users exist for in-process connections
// only (net.Pipe connections, random per-process passwords): one for local
// services in the global account and one in the system account for
// $JS.API.SERVER.REMOVE. Trap: every ReloadOptions first closes every
// client whose nkey or user name is not in the server's own user tables,
// which with custom authentication is all of them; clientAuth therefore
// clears those fields once a connection is authenticated and re-checks it
// by connection id (see clientAuth).
//
// Permissions. nats-server attaches permissions to a connection only when
// it authenticates (clientAuth calls RegisterUser), so a role change
// closes the connection. Every client shares the global account: per-member
// accounts would split the subject space (JetStream assets belong to one
// account, and a two-way import of ">" between accounts is a cycle
// nats-server refuses). A deny match always wins over an allow
// (TestTrapDenyBeatsNarrowerAllow), so a member allowed ">" cannot be
// given back a part of a denied family such as "its own consumers":
// members cannot create or delete consumers at all and use those admins
// make. JetStream limits (MaxStreams, MaxConsumers) are therefore the
// shared account's, and nats-server counts MaxConsumers per stream. Trap:
// an account holds two copies of its JetStream limits and every reload
// restores the configured one, so limitAccount sets both.
//
// JetStream bootstrap guard. Two groups that bootstrap the JetStream meta
// group separately and later merge lose streams, so with an empty store the
// server itself is not started until BootstrapExpect members are known:
// Start returns nil at once, Status().JetStream.Waiting is true, Ready()
// is closed and ConnectInProcess works only once SetMembers has brought
// enough members; then the server starts with all of them as routes.
// nats-server sizes a new meta group from max(2, known peers, configured
// routes), so with every member a route the expected size is the member
// count. A store that already holds meta-group state starts at once: its
// peer set is on disk.
//
// Why the whole server waits rather than only JetStream: enabling JetStream
// later through ReloadOptions does form one meta group, but a server that
// started without JetStream never enters itself in its own node table
// (nats-server does that only in NewServer when Options.JetStream is set),
// so as meta leader it reports itself as "Server name unknown" and cannot
// place stream replicas on itself. Core NATS is therefore unavailable on a
// fresh node until the mesh has BootstrapExpect members.
//
// bootstrap_expect 1: nats-server floors a clustered meta group at two
// (bootstrapRaftNode and AdjustBootClusterSize), so a lone clustered server
// runs JetStream without a meta leader until a second member arrives; a
// truly single-box deployment must run without a cluster (Cluster.Port 0),
// and turning that into a cluster later makes nats-server delete its
// existing streams as orphans. The caller must choose; this package does
// not hide it.
package natsnode
