package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
)

func runNATSEnv(ctx context.Context, args []string) error {
	fs := newFlagSet("nats-env", "")
	state := stateFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	dir := identity.StateDir(*state)
	m, err := dir.LoadMember(time.Now())
	if err != nil {
		return err
	}
	cfg, err := mesh.LoadConfig(dir)
	if err != nil {
		return err
	}
	url := "tls://" + net.JoinHostPort(m.Ticket.Addr.String(), strconv.Itoa(cfg.NATSClientPort))
	fmt.Printf("export NATS_URL=%s\n", url)
	fmt.Printf("export NATS_NKEY=%s\n", dir.NKeyPath())
	fmt.Printf("export NATS_CA=%s\n", dir.CACertPath())
	return nil
}
