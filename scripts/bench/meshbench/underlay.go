package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
	"github.com/meshnode/meshnode/natsnode"
)

// runUnderlayServer is `meshbench underlay-nats`: the node's embedded NATS
// server exactly as mesh.Node configures it (natsnode, node certificate,
// route secret, mutual route TLS, route address check, nkey client auth,
// JetStream with the node's limits), but listening on and routed over
// underlay addresses, with no WireGuard in the path. It runs inside a
// node's namespace next to the real daemon, on other ports, until SIGTERM.
//
//	meshbench underlay-nats --self DIR --node DIR=IP [--node DIR=IP ...] --store DIR
func runUnderlayServer(args []string) error {
	fs := flag.NewFlagSet("underlay-nats", flag.ContinueOnError)
	self := fs.String("self", "", "this node's state directory")
	store := fs.String("store", "", "JetStream store directory (not the node's)")
	clientPort := fs.Int("client-port", 14222, "client port")
	routePort := fs.Int("route-port", 16222, "route port")
	var nodes []string
	fs.Func("node", "STATEDIR=UNDERLAY_IP of every node of this cluster, self included", func(s string) error {
		nodes = append(nodes, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *self == "" || *store == "" || len(nodes) == 0 {
		return fmt.Errorf("underlay-nats: --self, --store and --node are required")
	}
	now := time.Now()
	dir := identity.StateDir(*self)
	me, err := dir.LoadMember(now)
	if err != nil {
		return err
	}
	cfg, err := mesh.LoadConfig(dir)
	if err != nil {
		return err
	}
	keys := map[identity.NodePublic]bool{}
	addrs := map[netip.Addr]identity.NodePublic{} // underlay address → who routes from it
	var members []natsnode.Member
	var host string
	for _, n := range nodes {
		d, ip, ok := strings.Cut(n, "=")
		if !ok {
			return fmt.Errorf("--node %q: want STATEDIR=IP", n)
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return err
		}
		m, err := identity.StateDir(d).LoadMember(now)
		if err != nil {
			return err
		}
		keys[m.ID.Public()] = true
		addrs[a] = m.ID.Public()
		if m.ID.Public() == me.ID.Public() {
			host = ip
			continue
		}
		members = append(members, natsnode.Member{ServerName: m.Ticket.Name, Addr: a, RoutePort: *routePort})
	}
	if host == "" {
		return fmt.Errorf("--self %s is not among --node", *self)
	}
	tlsCert, err := me.ID.TLSCertificate(me.Cert)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Go's default GOGC, not mesh.TuneRuntimeForDaemon: without
	// wireguard-go's 24 MiB of buffers this server's live heap is small, and
	// GOGC=25 of a small heap collects after every few MB (it raised the
	// underlay's CPU per delivered MB from 5 to 10 ms for 64 KiB messages).
	srv, err := natsnode.New(natsnode.Config{
		ServerName: me.Ticket.Name, StoreDir: *store,
		Host: host, ClientPort: *clientPort,
		ClientTLS: identity.ServerTLS(tlsCert, me.Trust),
		Authorize: func(k identity.NodePublic) bool { return keys[k] },
		Cluster: natsnode.ClusterConfig{
			Name: me.Trust.Mesh + "-underlay", Host: host, Port: *routePort,
			Advertise:   net.JoinHostPort(host, strconv.Itoa(*routePort)),
			RouteSecret: me.RouteSecret, RouteTLS: identity.RouteTLS(tlsCert, me.Trust),
			// As mesh.Node: the address and the certificate name one node.
			AllowRoute: func(a netip.Addr, c *x509.Certificate) bool {
				want, ok := addrs[a.Unmap()]
				got, certOK := identity.CertNode(c)
				return ok && certOK && got == want
			},
		},
		JetStream: natsnode.JetStreamConfig{
			Enabled: true, MaxMemory: cfg.JetStreamMaxMemory, MaxStore: cfg.JetStreamMaxStore,
			BootstrapExpect: len(nodes),
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv.SetMembers(members)
	if err := srv.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	srv.Shutdown()
	return nil
}
