package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
	"github.com/meshnode/meshnode/mesh/api"
)

func runRevoke(ctx context.Context, args []string) error {
	fs := newFlagSet("revoke", "NAME|NODE-KEY [--reason TEXT]")
	state := stateFlag(fs)
	reason := fs.String("reason", "", "why, shown on every member and on the revoked box (at most 200 bytes)")
	// Flags may come before or after the target: `revoke delta --reason x`
	// reads as naturally as `revoke --reason x delta`.
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("missing NAME or NODE-KEY: say which member to revoke")
	}
	target := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	dir := identity.StateDir(*state)
	c := api.NewClient(dir)
	rev, err := c.Revoke(ctx, target, *reason)
	offline := errors.Is(err, api.ErrNotRunning)
	if offline {
		// No daemon: sign on the state directory; the node gossips the
		// record when it is next up.
		var r api.Revoked
		r, err = mesh.RevokeOffline(dir, target, *reason, time.Now())
		rev = &r
		if err == nil && !r.Already {
			// A daemon that started meanwhile loaded the file before the
			// record was in it, and would write its own set over it:
			// hand it the revocation too (it then signs its own copy,
			// and the earliest record wins everywhere).
			if again, aerr := c.Revoke(ctx, r.Node.String(), *reason); aerr == nil {
				rev, offline = again, false
			}
		}
	}
	if err != nil {
		return err
	}
	printRevoked(os.Stdout, rev)
	if offline && !rev.Already {
		fmt.Printf("no daemon runs on %s: saved in %s; the mesh learns it when this node is up\n", dir, dir.RevocationsPath())
	}
	return nil
}

// printRevoked says what was revoked: name, key, overlay address, by whom,
// when and why.
func printRevoked(w io.Writer, r *api.Revoked) {
	what := r.Name
	if what == "" {
		what = "node"
	}
	verb := "revoked"
	if r.Already {
		verb = "was already revoked"
	}
	fmt.Fprintf(w, "%s %s (%s, %s) %s\n", what, verb, r.Node, r.Addr, revokedSummary(r))
}

// revokedSummary is "by alpha at 2026-03-14T15:00:00Z: stolen", as
// identity.Revocation.Summary words it.
func revokedSummary(r *api.Revoked) string {
	by := r.Issuer
	if by == "" {
		by = "the mesh CA"
	}
	s := "by " + by + " at " + r.Time.UTC().Format(time.RFC3339)
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s
}
