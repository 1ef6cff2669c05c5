package discovery_test

import (
	"context"
	"log"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
)

// The node's side of the contract: peers first, then gossip, then react to
// changes. (Compiled, not run: it needs an overlay interface.)
func Example() {
	ctx := context.Background()
	dir := identity.StateDir(identity.DefaultStateDir)
	m, err := dir.LoadMember(time.Now())
	if err != nil {
		log.Fatal(err)
	}
	revs, err := identity.LoadRevocations(dir.RevocationsPath(), m.Trust)
	if err != nil {
		log.Fatal(err)
	}
	d, err := discovery.New(discovery.Config{
		Member:          m,
		Revocations:     revs, // shared with NATS auth
		RevocationsPath: dir.RevocationsPath(),
		MembersPath:     dir.MembersPath(),
		Endpoints:       []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:51820")},
		NATSClientPort:  4222,
		NATSRoutePort:   6222,
	})
	if err != nil {
		log.Fatal(err)
	}
	setWireGuardPeers := func([]discovery.Member) {} // the node's WireGuard reconciliation
	setNATSRoutes := func([]discovery.Member) {}     // the node's NATS route set
	setWireGuardPeers(d.Known())                     // before gossip: it runs over the overlay
	if err := d.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer d.Shutdown()

	// A node that accepts joins also serves enrollment on the underlay,
	// with d as the member table (see package discovery/enroll).

	for range d.Changes() {
		setWireGuardPeers(d.Known()) // every state: the rejoin loop needs them
		var alive []discovery.Member // NATS routes: every live member, self included
		for _, m := range d.Members() {
			if m.State == discovery.StateAlive {
				alive = append(alive, m)
			}
		}
		setNATSRoutes(alive)
	}
}
