package main

import (
	"context"
	"fmt"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
)

// runRenew makes the running daemon renew its ticket and node certificate
// now instead of at two thirds of their lifetime (the daemon does that by
// itself).
func runRenew(ctx context.Context, args []string) error {
	fs := newFlagSet("renew", "")
	state := stateFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	r, err := api.NewClient(identity.StateDir(*state)).Renew(ctx)
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	fmt.Printf("renewed by %s: ticket expires %s, certificate expires %s\n", r.From,
		r.TicketExpires.Local().Format(time.RFC3339), r.CertExpires.Local().Format(time.RFC3339))
	return nil
}
