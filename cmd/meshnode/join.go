package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/discovery"
	enrollproto "github.com/meshnode/meshnode/discovery/enroll"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
)

func init() {
	register(&command{name: "join", usage: "join a mesh through PEER with a token, then run the node", run: runJoin})
}

func runJoin(ctx context.Context, args []string) error {
	fs := newFlagSet("join", "PEER --token TOKEN --name NAME [flags]")
	nf := addNodeFlags(fs)
	token := fs.String("token", "", "one-time join token from `meshnode invite`")
	name := fs.String("name", "", "this node's name (DNS label)")
	enrollOnly := fs.Bool("enroll-only", false, "stop after enrolling (run `meshnode up` later)")
	peer, err := parseWithPositional(fs, args)
	if err != nil {
		return err
	}
	if peer == "" {
		return errors.New("missing PEER: the admitting node's underlay host[:port]")
	}
	if *token == "" {
		return errors.New("--token is required")
	}
	if err := identity.ValidateName(*name); err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	cfg, err := nf.config()
	if err != nil {
		return err
	}
	cfg, err = enroll(ctx, cfg, peer, *token, *name, nf.given("bootstrap-expect"))
	if err != nil {
		return err
	}
	if *enrollOnly {
		return nil
	}
	return runNode(ctx, cfg)
}

// enroll asks the admitting node at peer for membership and writes the
// result. Nothing is written unless enrollment succeeds: a refused join
// leaves the state directory as it was. The mesh's gossip port and
// JetStream bootstrap_expect are adopted from the admitting node unless
// keepExpect says the operator chose bootstrap_expect.
func enroll(ctx context.Context, cfg mesh.Config, peer, token, name string, keepExpect bool) (mesh.Config, error) {
	dir := cfg.StateDir
	if _, err := os.Stat(dir.TicketPath()); err == nil {
		return cfg, fmt.Errorf("%s is already enrolled (%s exists): run meshnode up --state %s", dir, dir.TicketPath(), dir)
	}
	if _, err := identity.ParseInvite(token); err != nil {
		return cfg, fmt.Errorf("--token: %w", err)
	}
	// An identity made earlier (an appliance's first boot, a retried join)
	// is reused; otherwise the seed lives in memory until enrollment works.
	var seed identity.Seed
	haveSeed := dir.HasIdentity()
	if haveSeed {
		s, err := identity.LoadSeed(dir.SeedPath())
		if err != nil {
			return cfg, err
		}
		seed = s
	} else {
		s, err := identity.NewSeed()
		if err != nil {
			return cfg, err
		}
		seed = s
	}
	id := identity.FromSeed(seed)
	eps, err := cfg.ParseEndpoints()
	if err != nil {
		return cfg, err
	}
	if len(eps) == 0 {
		eps = mesh.LocalEndpoints(cfg.ListenPort, cfg.Interface)
	}
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := enrollproto.Join(ectx, withDefaultPort(peer, mesh.DefaultEnrollPort), token, id, name, eps)
	if err != nil {
		return cfg, fmt.Errorf("join via %s refused: %w", peer, err)
	}
	if p := res.Mesh.GossipPort; p > 0 && p <= 65535 {
		cfg.GossipPort = p
	}
	if e := res.Mesh.BootstrapExpect; e > 0 && !keepExpect {
		cfg.BootstrapExpect = e
	}
	if err := dir.Ensure(); err != nil {
		return cfg, err
	}
	if !haveSeed {
		if err := identity.SaveSeed(dir.SeedPath(), seed); err != nil {
			return cfg, err
		}
	}
	m, err := dir.SaveEnrollment(id, res.Enrollment, time.Now())
	if err != nil {
		return cfg, err
	}
	if err := discovery.WriteMembers(dir.MembersPath(), res.Members); err != nil {
		return cfg, err
	}
	if err := mesh.SaveConfig(cfg); err != nil {
		return cfg, err
	}
	fmt.Printf("joined mesh %s as %s (%s), %d members known\n", m.Trust.Mesh, m.Ticket.Name, m.Ticket.Addr, len(res.Members))
	return cfg, nil
}

// withDefaultPort adds port to a host without one (IPv6 literals included).
func withDefaultPort(hostport string, port int) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	return net.JoinHostPort(strings.Trim(hostport, "[]"), strconv.Itoa(port))
}

// parseWithPositional parses flags that may come before or after one
// positional argument (`join PEER --token T` and `join --token T PEER`).
func parseWithPositional(fs interface {
	Parse([]string) error
	NArg() int
	Arg(int) string
	Args() []string
}, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", nil
	}
	pos := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return pos, nil
}
