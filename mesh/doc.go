// Package mesh owns the node itself: mesh.Node wires a node's identity into
// its WireGuard device (mesh/wg), its gossip membership (discovery) and its
// embedded NATS server (natsnode), and keeps the last two in step with the
// first: every membership change becomes WireGuard peers and NATS routes.
// It also serves the local API the CLI talks to over a unix socket, and
// Join (join.go) makes a state directory a member: the CLI's join and the
// appliance's first boot, with errors typed for retry-or-stop decisions.
//
// Data flows one way: identity → Node → (wg device, discovery, natsnode);
// discovery events → Node → (wg peers, NATS routes). The parts never import
// each other.
package mesh
