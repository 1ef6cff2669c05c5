// Command meshnode runs a node of a private WireGuard overlay mesh with an
// embedded NATS/JetStream bus, and is the CLI that manages it.
//
// Each subcommand lives in its own file and registers itself in init; the
// daemon is `meshnode up`, every other subcommand talks to it over the local
// API socket or works on the state directory directly.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand.
type command struct {
	name  string
	usage string // one line: arguments and what it does
	run   func(ctx context.Context, args []string) error
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("meshnode: duplicate subcommand " + c.name)
	}
	commands[c.name] = c
}

// exitError carries a specific process exit code (status uses 1 and 2).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usage() {
	fmt.Fprintln(os.Stderr, "usage: meshnode <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].usage)
	}
}

func main() {
	if os.Getpid() == 1 && pid1 != nil {
		pid1() // the appliance: meshnode is /init
		return
	}
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "meshnode: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := c.run(ctx, os.Args[2:])
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
			fmt.Fprintf(os.Stderr, "meshnode %s: %v\n", c.name, ee.err)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintf(os.Stderr, "meshnode %s: %v\n", c.name, err)
	os.Exit(1)
}

// pid1 is set by the appliance boot code (pid1.go) when built in.
var pid1 func()
