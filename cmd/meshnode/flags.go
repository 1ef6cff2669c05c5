package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// listFlag is a repeatable string flag (--endpoint a --endpoint b).
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// nodeFlags are the node settings every node-running subcommand accepts.
// Only flags given on the command line override the config file.
type nodeFlags struct {
	fs         *flag.FlagSet
	state      *string
	iface      string
	listenPort int
	endpoints  listFlag
	enrollAddr string
	expect     int
	fast       bool
	logLevel   string
}

func newFlagSet(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet("meshnode "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: meshnode %s %s\n\nflags:\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// stateDefault is the default of every --state flag. dispatch sets it from
// the root flag (`meshnode --state DIR <command>`) before the subcommand
// parses its own flags, so a subcommand's --state, when given, still wins.
var stateDefault = defaults.StateDir

// stateFlag defines --state on fs. It is the flag's one definition: the root
// flag set and every subcommand that works on a state directory call it.
func stateFlag(fs *flag.FlagSet) *string {
	return fs.String("state", stateDefault, "state directory")
}

func addNodeFlags(fs *flag.FlagSet) *nodeFlags {
	nf := &nodeFlags{fs: fs, state: stateFlag(fs)}
	fs.StringVar(&nf.iface, "iface", defaults.Interface, "WireGuard interface name")
	fs.IntVar(&nf.listenPort, "listen-port", defaults.ListenPort, "WireGuard UDP port")
	fs.Var(&nf.endpoints, "endpoint", "underlay IP:port other members dial (repeatable; default: every global address)")
	fs.StringVar(&nf.enrollAddr, "enroll-addr", fmt.Sprintf(":%d", defaults.EnrollPort), "enrollment endpoint listen address (underlay TCP)")
	fs.IntVar(&nf.expect, "bootstrap-expect", defaults.BootstrapExpect, "members to wait for before JetStream starts on an empty store")
	fs.BoolVar(&nf.fast, "fast-timers", false, "short gossip timers (tests, demo)")
	fs.StringVar(&nf.logLevel, "log-level", defaults.LogLevel, "debug, info, warn or error")
	return nf
}

// config loads <state>/meshnode.toml and applies the flags that were given.
func (nf *nodeFlags) config() (mesh.Config, error) {
	cfg, err := mesh.LoadConfig(identity.StateDir(*nf.state))
	if err != nil {
		return cfg, err
	}
	nf.fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "iface":
			cfg.Interface = nf.iface
		case "listen-port":
			cfg.ListenPort = nf.listenPort
		case "endpoint":
			cfg.Endpoints = nf.endpoints
		case "enroll-addr":
			cfg.EnrollAddr = nf.enrollAddr
		case "bootstrap-expect":
			cfg.BootstrapExpect = nf.expect
		case "fast-timers":
			cfg.FastTimers = nf.fast
		case "log-level":
			cfg.LogLevel = nf.logLevel
		}
	})
	return cfg, cfg.Validate()
}

// noArgs rejects stray positional arguments, naming them.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// given reports whether flag name was set on the command line.
func (nf *nodeFlags) given(name string) bool {
	set := false
	nf.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
