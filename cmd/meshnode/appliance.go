package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/image/boot"
	"github.com/meshnode/meshnode/mesh"
	"github.com/meshnode/meshnode/mesh/updater"
)

// applianceNode runs the node on the appliance once PID 1 has mounted the
// perm partition and brought the network up. A state directory that is not
// enrolled yet joins with the first-boot token (which is then removed from
// the ESP); an enrolled one simply comes up. A refused token is a config
// error for the operator; an unreachable peer is retried by PID 1
// (mesh.Retryable tells the two apart).
func applianceNode(ctx context.Context, bc boot.BootConfig) error {
	dir := identity.StateDir(bc.StateDir)
	if err := dir.Ensure(); err != nil {
		return fmt.Errorf("%w: %v", boot.ErrFatal, err)
	}
	cfg, err := mesh.LoadConfig(dir)
	if err != nil {
		return fmt.Errorf("%w: %v", boot.ErrConfig, err)
	}
	if _, err := os.Stat(dir.TicketPath()); err != nil {
		c := bc.Config
		switch {
		case c.Token == "":
			return fmt.Errorf("%w: this box is not enrolled and config.toml has no token: run meshnode image configure --token", boot.ErrConfig)
		case c.Join == "":
			return fmt.Errorf("%w: this box is not enrolled and config.toml has no join peer", boot.ErrConfig)
		case c.Name == "":
			return fmt.Errorf("%w: config.toml has no name for this node", boot.ErrConfig)
		}
		if err := identity.ValidateName(c.Name); err != nil {
			return fmt.Errorf("%w: config.toml name: %v", boot.ErrConfig, err)
		}
		if _, err := identity.ParseInvite(c.Token); err != nil {
			return fmt.Errorf("%w: config.toml token: %v", boot.ErrConfig, err)
		}
		res, err := mesh.Join(ctx, cfg, mesh.JoinRequest{Peer: c.Join, Token: c.Token, Name: c.Name})
		if err != nil {
			if ctx.Err() == nil && !mesh.Retryable(err) {
				// Retrying the same join cannot help (the token is spent
				// or refused, the name taken, the peer of another mesh):
				// the operator must fix config.toml or mint a new token.
				return fmt.Errorf("%w: %v", boot.ErrConfig, err)
			}
			return err
		}
		printJoined(res)
		cfg = res.Config
		if err := bc.ConsumeToken(); err != nil {
			// Enrolled anyway: the token is spent on the admitting node.
			fmt.Fprintf(os.Stderr, "meshnode: could not remove the used token from config.toml: %v\n", err)
		}
	}
	mesh.TuneRuntimeForDaemon()
	n, err := mesh.New(cfg, newLogger(cfg.LogLevel))
	if err != nil {
		return err
	}
	trust, err := identity.LoadTrust(dir.CACertPath())
	if err != nil {
		return err
	}
	// The update agent reboots the box by stopping the node: Run returns
	// nil and PID 1 reboots, after the node left gossip.
	nctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		select {
		case <-n.Ready():
			bc.Ready(n.Name(), n.Addr().String())
		case <-nctx.Done():
		}
	}()
	// The agent starts with the node, not once it is ready: a slot on
	// trial whose node never comes up must still fail its trial.
	agent := updater.New(updater.Config{
		Node: n, CA: trust.Public, Box: bc.Update,
		Reboot: func(why string) { stop(errors.New(why)) },
		Say:    func(line string) { fmt.Println(line) }, // the console
	})
	go func() {
		if err := agent.Run(nctx); err != nil && nctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "meshnode: update agent: %v\n", err)
		}
	}()
	return n.Run(nctx)
}
