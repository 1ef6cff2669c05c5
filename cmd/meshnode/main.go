// Command meshnode runs a node of a private WireGuard overlay mesh with an
// embedded NATS/JetStream bus, and is the CLI that manages it.
//
// Each subcommand lives in its own file and has one row in the commands
// table below; the daemon is `meshnode up`, every other subcommand talks to
// it over the local API socket or works on the state directory directly.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand.
type command struct {
	name  string
	usage string // one line: arguments and what it does
	run   func(ctx context.Context, args []string) error
}

// commands is every subcommand, in the order usage lists them: sorted by
// name (TestCommandsSorted). One explicit table instead of registration
// from each file's init, so that the whole CLI reads in one place and a
// file cannot add a command by being compiled in.
var commands = []command{
	{"image", "build | configure: build the appliance disk image, or write its first-boot config", runImage},
	{"init", "create a new mesh with this box as its first (admin) node", runInit},
	{"invite", "mint a one-time join token (prints only the token)", runInvite},
	{"join", "join a mesh through PEER with a token, then run the node", runJoin},
	{"leave", "leave the mesh gracefully and stop the daemon", runLeave},
	{"metrics", "print this node's metrics in the Prometheus text format", runMetrics},
	{"nats", "NATS client with this node's identity: pub, sub, stream-add, stream-info, js-pub", runNATS},
	{"nats-env", "print NATS_URL, NATS_NKEY and NATS_CA for nats clients on this box", runNATSEnv},
	{"phone", "add | list | remove: a phone (stock WireGuard app) as a peer of a hub: config + QR code", runPhone},
	{"ping", "send overlay pings to a member and print the path and latency of each", runPing},
	{"renew", "renew this node's ticket and certificate now (the daemon renews by itself at 2/3 of their lifetime)", runRenew},
	{"revoke", "revoke a member by NAME or node key (admin nodes): cut off everywhere, for good", runRevoke},
	{"status", "show this node, its members and NATS routes (exit 0 healthy, 1 degraded, 2 not running)", runStatus},
	{"up", "run the node in the foreground (the daemon)", runUp},
	{"update", "sign | publish | push | status | inspect: update appliances over the mesh", runUpdate},
	{"version", "print the version", runVersion},
}

// lookup returns the subcommand called name, or nil.
func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// exitError carries a specific process exit code (status uses 1 and 2).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usage() {
	fmt.Fprintln(os.Stderr, "usage: meshnode [--state DIR] <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", c.name, c.usage)
	}
}

func main() {
	if os.Getpid() == 1 && pid1 != nil {
		pid1() // the appliance: meshnode is /init
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	name, err := dispatch(ctx, os.Args[1:])
	stop()
	if err == nil {
		return
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintf(os.Stderr, "meshnode %s: %v\n", name, ee.err)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintf(os.Stderr, "meshnode %s: %v\n", name, err)
	os.Exit(1)
}

// dispatch parses the root flags (the ones before the subcommand) and runs
// the subcommand, returning its name for error messages. Usage problems
// are printed here and returned as flag.ErrHelp (exit 2).
func dispatch(ctx context.Context, args []string) (string, error) {
	root := flag.NewFlagSet("meshnode", flag.ContinueOnError)
	root.Usage = usage
	state := stateFlag(root)
	if err := root.Parse(args); err != nil {
		return "", flag.ErrHelp // flag printed the error and usage
	}
	if root.NArg() == 0 || root.Arg(0) == "help" {
		usage()
		return "", flag.ErrHelp
	}
	c := lookup(root.Arg(0))
	if c == nil {
		fmt.Fprintf(os.Stderr, "meshnode: unknown command %q\n", root.Arg(0))
		usage()
		return "", flag.ErrHelp
	}
	// Every subcommand's --state defaults to the root flag's value, so
	// `meshnode --state D status` and `meshnode status --state D` agree.
	stateDefault = *state
	return c.name, c.run(ctx, root.Args()[1:])
}

// pid1 is set by the appliance boot code (pid1.go) when built in.
var pid1 func()
