// Package natsnode owns the node's embedded nats-server: its options, the
// route set built from mesh members, route and client authentication, TLS,
// and the JetStream bootstrap guard. It knows nothing of gossip or
// WireGuard: its caller (mesh.Node) hands it a member set and a membership
// predicate.
//
// The contract the caller wires:
//
//   - New(Config) validates the configuration. A cluster listening beyond
//     loopback needs a route secret AND complete mutual route TLS (a
//     certificate, RootCAs, ClientCAs, RequireAndVerifyClientCert and a fixed
//     ServerName); partial route TLS is an error anywhere.
//   - Start(ctx) starts the server and blocks until it accepts connections
//     (bounded by ctx and StartTimeout). Server log lines go to the slog
//     logger; a Fatalf from the server (for example a JetStream start
//     failure) becomes Start's error instead of a hang or os.Exit.
//   - SetMembers([]Member) hands over the current member set (self
//     included or not: self is always added). Every member becomes an
//     explicit route; the canonical URLs come from one function (routeURLs)
//     and are applied with ReloadOptions, debounced, off the caller's
//     goroutine.
//   - Authorize is asked on EVERY client connection. Recheck() closes open
//     client connections whose identity is no longer authorized; the caller
//     calls it on each membership change and a ticker calls it every
//     RecheckInterval as a safety net.
//   - AllowRoute is asked for every inbound route connection with the
//     remote's address; routes also need the route secret (checked here:
//     see below) and a certificate from the mesh CA (checked by TLS).
//   - RemovePeer(name) takes a server out of the JetStream meta group.
//   - ConnectInProcess, ClientURL, Status and Shutdown serve the node.
//
// Route authentication. In nats-server v2.15 a CustomRouterAuthentication
// REPLACES the cluster username/password check (isRouterAuthorized returns
// the custom result alone), so the route authenticator here checks the
// route secret itself, in constant time, as well as the remote address.
// Route credentials travel as user info in the route URLs this package
// builds (the server sends the URL's user info in its route CONNECT).
//
// Client authentication. A CustomClientAuthentication with
// AlwaysEnableNonce: the client's signature over the server nonce is
// verified against its nkey, the nkey is mapped to an identity key and
// Authorize is asked. Two internal users exist for in-process connections
// only (net.Pipe connections, random per-process passwords): one for local
// services in the global account and one in the system account for
// $JS.API.SERVER.REMOVE.
//
// JetStream bootstrap guard. Two groups that bootstrap the JetStream meta
// group separately and later merge lose streams, so on an empty store the
// server starts with JetStream off and turns it on (ReloadOptions with
// JetStream=true, which nats-server applies with EnableJetStream) only once
// BootstrapExpect members are known, in the same reload that makes them
// all routes. nats-server sizes a new meta group from max(2, known peers,
// configured routes), so with every member as a route the expected size is
// the member count. A store that already holds meta-group state starts
// JetStream at once: its peer set is on disk. Delaying JetStream rather than
// the whole server keeps core NATS (local services, routes) up while the
// mesh is still forming.
//
// Ejecting a member: removing its route closes only the connection this
// server dialled; the caller must also remove its WireGuard peer, and from
// then on AllowRoute refuses it.
package natsnode
