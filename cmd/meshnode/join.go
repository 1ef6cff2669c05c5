package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
)

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
	res, err := mesh.Join(ctx, cfg, mesh.JoinRequest{
		Peer: peer, Token: *token, Name: *name,
		KeepBootstrapExpect: nf.given("bootstrap-expect"),
	})
	if errors.Is(err, mesh.ErrTokenInvalid) {
		return fmt.Errorf("--token: %w", err)
	}
	if err != nil {
		return err
	}
	printJoined(res)
	if *enrollOnly {
		return nil
	}
	return runNode(ctx, res.Config)
}

// printJoined says what a join stored.
func printJoined(res *mesh.JoinResult) {
	fmt.Printf("joined mesh %s as %s (%s), %d members known\n", res.Mesh, res.Name, res.Addr, res.Members)
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
