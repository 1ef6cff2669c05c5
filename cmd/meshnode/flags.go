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

// nodeFlags are the node settings every node-running subcommand accepts.
// Each one is defined together with the mesh.Config field it sets
// (nodeFlag), so a node flag cannot be parsed and then silently dropped;
// only flags given on the command line override the config file.
type nodeFlags struct {
	fs    *flag.FlagSet
	state *string
	// parsed holds what the node flags parsed into; it starts as
	// mesh.DefaultConfig, whose values the flags' help shows.
	parsed mesh.Config
	// apply copies one node flag's value from parsed into a Config.
	apply map[string]func(*mesh.Config)
}

func addNodeFlags(fs *flag.FlagSet) *nodeFlags {
	nf := &nodeFlags{fs: fs, state: stateFlag(fs), parsed: mesh.DefaultConfig(), apply: map[string]func(*mesh.Config){}}
	nodeFlag(nf, fs.StringVar, "iface", func(c *mesh.Config) *string { return &c.Interface },
		"WireGuard interface name")
	nodeFlag(nf, fs.IntVar, "listen-port", func(c *mesh.Config) *int { return &c.ListenPort },
		"WireGuard UDP port")
	nodeFlag(nf, listVar(fs), "endpoint", func(c *mesh.Config) *[]string { return &c.Endpoints },
		"underlay IP:port other members dial (repeatable; default: every global address)")
	nodeFlag(nf, fs.StringVar, "enroll-addr", func(c *mesh.Config) *string { return &c.EnrollAddr },
		"enrollment endpoint listen address (underlay TCP)")
	nodeFlag(nf, fs.IntVar, "bootstrap-expect", func(c *mesh.Config) *int { return &c.BootstrapExpect },
		"members to wait for before JetStream starts on an empty store")
	nodeFlag(nf, fs.StringVar, "metrics-addr", func(c *mesh.Config) *string { return &c.MetricsAddr },
		"also serve GET /metrics on this TCP address (e.g. 127.0.0.1:9101; off when empty)")
	nodeFlag(nf, fs.BoolVar, "metrics-per-peer", func(c *mesh.Config) *bool { return &c.MetricsPerPeer },
		"export per-peer WireGuard series (a series per member)")
	nodeFlag(nf, fs.BoolVar, "fast-timers", func(c *mesh.Config) *bool { return &c.FastTimers },
		"short gossip timers (tests, demo)")
	nodeFlag(nf, fs.BoolVar, "lab-endpoints", func(c *mesh.Config) *bool { return &c.LabEndpoints },
		"lab mesh on one host: members may advertise loopback and link-local endpoints")
	nodeFlag(nf, fs.BoolVar, "relay-only", func(c *mesh.Config) *bool { return &c.RelayOnly },
		"reach members that are not hubs only through a hub (tests, odd networks)")
	nodeFlag(nf, fs.BoolVar, "no-relay", func(c *mesh.Config) *bool { return &c.NoRelay },
		"never relay through a hub: direct paths only (tests, odd networks)")
	nodeFlag(nf, fs.StringVar, "log-level", func(c *mesh.Config) *string { return &c.LogLevel },
		"debug, info, warn or error")
	return nf
}

// nodeFlag defines flag name with define (fs.StringVar, fs.IntVar, …) to
// parse into the field of nf.parsed that field selects, with that field's
// default, and records how config copies it into the loaded Config.
func nodeFlag[T any](nf *nodeFlags, define func(p *T, name string, value T, usage string),
	name string, field func(*mesh.Config) *T, usage string) {
	p := field(&nf.parsed)
	define(p, name, *p, usage)
	nf.apply[name] = func(c *mesh.Config) { *field(c) = *p }
}

// listVar is fs.Var for a repeatable string flag, shaped like fs.StringVar.
// Values given append to the default, which for every use here is empty.
func listVar(fs *flag.FlagSet) func(p *[]string, name string, value []string, usage string) {
	return func(p *[]string, name string, value []string, usage string) {
		*p = value
		fs.Var((*listFlag)(p), name, usage)
	}
}

// config loads <state>/meshnode.toml and applies the node flags that were
// given.
func (nf *nodeFlags) config() (mesh.Config, error) {
	cfg, err := mesh.LoadConfig(identity.StateDir(*nf.state))
	if err != nil {
		return cfg, err
	}
	nf.fs.Visit(func(f *flag.Flag) {
		if apply := nf.apply[f.Name]; apply != nil {
			apply(&cfg)
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
