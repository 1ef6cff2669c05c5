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
//   - Config.Leaf makes the server a core server with a leaf-node
//     listener (AllowLeaf asked for every inbound leaf connection) or a
//     leaf server (Solicit): no cluster, no JetStream, and the members
//     SetMembers hands over are the core servers it connects to, at their
//     LeafPort, through one remote (see "Leaf nodes" below).
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
// Leaf nodes. A leaf member's server connects to one core server at a
// time over mutual mesh-CA TLS and proves its node's nkey over the core's
// nonce (RemoteLeafOpts.Nkey, the seed: with a SignatureCB nats-server
// sends no nkey, and a reload compares remotes with DeepEqual, which a
// func never passes). The core has no leaf users of its own, so
// nats-server hands the connection to clientAuth with Kind() == LEAF
// (TestTrapLeafAuthFallsThrough); clientAuth checks the nkey signature,
// that the verified certificate names the same identity, AllowLeaf
// (source address and certificate of one live member), Authorize, and
// gives the connection its member's role as leaf permissions
// (leafPermissions; TestLeafUsesCoreJetStream shows a leaf box cannot
// delete streams or publish into $SYS, TestLeafCoreEnforcesPermissions
// that the core enforces it against a leaf speaking the protocol itself).
// nats-server never re-checks a leaf connection on a reload, so Recheck
// closes refused ones itself (DisconnectClientByID closes leaf
// connections too). A changed remote URL list is a new remote, so the
// leaf reconnects (TestTrapLeafRemoteChangeReconnects).
//
// JetStream across the leaf connection. The core servers name their
// JetStream domain (JetStreamDomain); a leaf server maps its clients'
// $JS.API.>, $KV.> and $OBJ.> to $JS.<domain>.API.… and the core maps
// that back (see leafOptions). The plain JetStream API thus never
// crosses a leaf connection, and a leaf box receives no other member's
// JetStream request (TestLeafDoesNotSeeJetStreamAPI). Traps: nats-server
// denies $JS.API.>, $KV.> and $OBJ.> on every leaf connection between
// servers of differing domains, and one subscribe list governs both
// directions of a leaf connection, so the domain prefix must stay open
// there (see leafSubDeny); a leaf server maps its clients' subjects
// before it checks their permissions and the core checks a leaf's
// publishes before it maps them, so every JetStream deny is listed under
// both prefixes (withDomainAPI). Naming the domain on a store that ran
// without one keeps its streams (TestJetStreamDomainKeepsStore).
//
// JetStream bootstrap. Core NATS (pub/sub, request/reply, with the same
// authentication and TLS) serves from the first node; only JetStream may
// wait. Two groups that bootstrap the JetStream meta group separately and
// later merge lose streams, so a fresh store (no meta-group state) runs
// the server in one of two provisional modes and restarts it once into
// the configured one (nextMode is the policy, TestNextMode its table):
//
//   - alone (no member but itself, the first node of a mesh): JetStream
//     without a cluster, so R1 streams work at once. A lone clustered
//     server never gets a meta leader: nats-server floors a meta group
//     at two (bootstrapRaftNode, AdjustBootClusterSize), and its
//     quorum rescue refuses an empty log. No meta group, nothing to
//     split.
//   - core (some members, fewer than BootstrapExpect, none running
//     JetStream): routes but no JetStream.
//   - full: routes and clustered JetStream, once BootstrapExpect members
//     are known, or a routed member already runs clustered JetStream
//     (there is a group to join and none to start: jetStreamPeer asks
//     every server's statsz), or this store ran alone (its JetStream is
//     the mesh's and forms the meta group with the members that joined).
//     nats-server sizes a new meta group from max(2, known peers,
//     configured routes), so with every member a route the expected size
//     is the member count. A store with meta-group state starts here: its
//     peer set is on disk.
//
// Why a restart and not EnableJetStream (or a reload turning JetStream
// on) on the running server: that forms one meta group, but a server
// started without JetStream never enters itself in its own node table
// (nats-server does that only in NewServer when Options.JetStream is set),
// and peer selection skips servers missing from it, so as meta leader it
// could not place stream replicas on itself. The restart drops client
// connections once; clients reconnect (ConnectInProcess connections too,
// see inProcess), and connection ids start again at 1 (see restart).
//
// Why streams survive the alone → full restart: nats-server deletes the
// streams of a standalone run as orphans when it restarts clustered, but
// reuses a stream directory for a stream assigned to it; see "Stream
// adoption" in bootstrap.go.
package natsnode
