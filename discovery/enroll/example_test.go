package enroll_test

import (
	"context"
	"log"
	"net"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/discovery/enroll"
	"github.com/meshnode/meshnode/identity"
)

// A node holding the mesh CA serves enrollment on the underlay, with its
// discovery as the member table. (Compiled, not run: it needs a state
// directory.)
func ExampleServer() {
	dir := identity.StateDir(identity.DefaultStateDir)
	m, err := dir.LoadMember(time.Now())
	if err != nil {
		log.Fatal(err)
	}
	revs, err := identity.LoadRevocations(dir.RevocationsPath(), m.Trust)
	if err != nil {
		log.Fatal(err)
	}
	d, err := discovery.Start(context.Background(), discovery.Config{Member: m, Revocations: revs, MembersPath: dir.MembersPath()})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Shutdown()
	srv, err := enroll.NewServer(enroll.ServerConfig{
		Member:      m,
		Mesh:        enroll.MeshParams{GossipPort: discovery.DefaultPort, BootstrapExpect: 3},
		Invites:     identity.OpenInvites(dir.InvitesPath(), m.Trust),
		Members:     d,
		Revocations: revs,
		// Peer with the newcomer before it is told it is in.
		OnAdmit: func(discovery.Member) { setWireGuardPeers(d.Members()) },
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", ":51821")
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	log.Fatal(srv.Serve(ln))
}

// A newcomer joins with a token and stores what it was given; mesh.Join
// is this transaction for a node's state directory.
func ExampleJoin() {
	seed, err := identity.NewSeed()
	if err != nil {
		log.Fatal(err)
	}
	id := identity.FromSeed(seed)
	eps := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:51820")}
	res, err := enroll.Join(context.Background(), "192.0.2.1", "mnj1-…", id, "edge-7", eps)
	if err != nil {
		log.Fatal(err)
	}
	dir := identity.StateDir("/var/lib/meshnode")
	if err := identity.SaveSeed(dir.SeedPath(), seed); err != nil {
		log.Fatal(err)
	}
	if _, err := dir.SaveEnrollment(id, res.Enrollment, time.Now()); err != nil {
		log.Fatal(err)
	}
	if err := discovery.WriteMembers(dir.MembersPath(), res.Members); err != nil {
		log.Fatal(err)
	}
}

func setWireGuardPeers([]discovery.Member) {}
