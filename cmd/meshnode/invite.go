package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/mesh/defaults"
)

func runInvite(ctx context.Context, args []string) error {
	fs := newFlagSet("invite", "[--ttl 1h] [--role hub]")
	state := stateFlag(fs)
	ttl := fs.Duration("ttl", defaults.InviteTTL, "how long the token stays valid")
	role := fs.String("role", "", "roles for the new member: hub, admin (comma-separated)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	roles, err := identity.ParseRoles(*role)
	if err != nil {
		return fmt.Errorf("--role: %w", err)
	}
	if roles.Has(identity.RoleCore) {
		return fmt.Errorf("--role core: the admitting node decides who is core (the first members, up to the mesh's max_core)")
	}
	if *ttl <= 0 {
		return fmt.Errorf("--ttl %s: must be positive", *ttl)
	}
	dir := identity.StateDir(*state)
	tok, err := api.NewClient(dir).Invite(ctx, *ttl, roles)
	if errors.Is(err, api.ErrNotRunning) {
		// No daemon: mint from the state directory directly (the invites
		// file is locked against a daemon starting meanwhile).
		tok, err = inviteOffline(dir, *ttl, roles)
	}
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

func inviteOffline(dir identity.StateDir, ttl time.Duration, roles identity.Roles) (string, error) {
	ca, err := identity.LoadCA(dir.CAKeyPath(), dir.CACertPath())
	if err != nil {
		return "", fmt.Errorf("this node cannot admit members: %w", err)
	}
	return identity.OpenInvites(dir.InvitesPath(), ca.Trust).New(ttl, roles, time.Now())
}
