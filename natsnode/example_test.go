package natsnode_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/natsnode"
)

// How mesh.Node wires the server: node certificate and mesh CA for TLS,
// membership predicates from the member table, members from gossip.
func Example() {
	var (
		id       *identity.Identity // the node's identity
		nodeCert *identity.NodeCert // its certificate from the mesh CA
		trust    *identity.Trust    // the mesh CA
		overlay  netip.Addr         // its overlay address
		secret   string             // the mesh route secret
		isMember func(identity.NodePublic) bool
		// isRoute: remote is a current member's overlay address and cert
		// certifies that member's identity (identity.CertNode).
		isRoute func(remote netip.Addr, cert *x509.Certificate) bool
	)
	cert, err := id.TLSCertificate(nodeCert)
	if err != nil {
		panic(err)
	}
	srv, err := natsnode.New(natsnode.Config{
		ServerName: "edge-1",
		StoreDir:   "/var/lib/meshnode/nats",
		Host:       overlay.String(),
		ClientPort: 4222,
		ClientTLS:  identity.ServerTLS(cert, trust),
		Authorize:  isMember,
		Cluster: natsnode.ClusterConfig{
			Name:        trust.Mesh,
			Host:        overlay.String(),
			Port:        6222,
			Advertise:   netip.AddrPortFrom(overlay, 6222).String(),
			RouteSecret: secret,
			RouteTLS:    identity.RouteTLS(cert, trust),
			AllowRoute:  isRoute,
		},
		JetStream: natsnode.JetStreamConfig{Enabled: true, MaxMemory: 256 << 20, MaxStore: 8 << 30, BootstrapExpect: 3},
		Logger:    slog.Default(),
	})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()
	if err := srv.Start(context.Background()); err != nil {
		panic(err)
	}
	// On every member-table change:
	srv.SetMembers([]natsnode.Member{{ServerName: "edge-2", Addr: netip.MustParseAddr("fd00::2"), RoutePort: 6222}})
	srv.Recheck()
	// For `meshnode status`:
	st := srv.Status()
	fmt.Println(st.RoutesUp, st.RoutesExpected, st.JetStream.Waiting)
}
