package main

import (
	"context"
	"fmt"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
)

func runLeave(ctx context.Context, args []string) error {
	fs := newFlagSet("leave", "")
	state := stateFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if err := api.NewClient(identity.StateDir(*state)).Leave(ctx); err != nil {
		return err
	}
	fmt.Println("left the mesh; daemon stopping")
	return nil
}
