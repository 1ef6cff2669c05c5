package main

import (
	"context"
	"fmt"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
	"github.com/meshnode/meshnode/mesh/defaults"
)

func runInit(ctx context.Context, args []string) error {
	fs := newFlagSet("init", "--name NAME [--mesh MESH] [flags]")
	nf := addNodeFlags(fs)
	name := fs.String("name", "", "this node's name (DNS label)")
	meshName := fs.String("mesh", "mesh", "the mesh's name (DNS label)")
	hub := fs.Bool("hub", false, "this node is reachable and relays for phones")
	validity := fs.Duration("member-validity", defaults.MemberValidity,
		"lifetime of the mesh's tickets and node certificates (at least 1m); members renew at 2/3 of it")
	maxCore := fs.Int("max-core", defaults.MaxCore,
		"most core members (NATS route cluster and JetStream meta group; at least 1): the first members admitted are core, every later one a NATS leaf node")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("--name is required")
	}
	cfg, err := nf.config()
	if err != nil {
		return err
	}
	roles := identity.RoleAdmin
	if *hub {
		roles |= identity.RoleHub
	}
	if err := identity.CheckMemberValidity(*validity); err != nil || *validity <= 0 {
		return fmt.Errorf("--member-validity %s: want at least %s", *validity, identity.MinMemberValidity)
	}
	cfg.MemberValidity = *validity
	if *maxCore < 1 {
		return fmt.Errorf("--max-core %d: want at least 1", *maxCore)
	}
	cfg.MaxCore = *maxCore
	m, err := cfg.StateDir.InitMesh(*meshName, *name, roles, *validity, time.Now())
	if err != nil {
		return err
	}
	if err := mesh.SaveConfig(cfg); err != nil {
		return err
	}
	fmt.Printf("mesh:          %s\n", m.Trust.Mesh)
	fmt.Printf("name:          %s\n", m.Ticket.Name)
	fmt.Printf("overlay:       %s (mesh %s)\n", m.Ticket.Addr, m.Trust.Prefix())
	fmt.Printf("wireguard key: %s\n", m.ID.WireGuardPublic())
	fmt.Printf("validity:      members %s (renewed at 2/3), CA until %s\n", *validity, m.Trust.Cert.NotAfter.Format("2006-01-02"))
	fmt.Printf("core members:  at most %d (NATS routes and JetStream; later members are leaf nodes)\n", cfg.MaxCore)
	fmt.Printf("state:         %s\n", cfg.StateDir)
	fmt.Printf("next:          meshnode up --state %s\n", cfg.StateDir)
	return nil
}
