// Command meshbench is the multi-node half of scripts/bench/run: it starts
// real meshnode processes in network namespaces (scripts/meshlab) and
// measures overlay throughput, NATS over the overlay vs the underlay, time
// to mesh, failure detection and idle cost, then prints a table and writes
// a JSON report. Every figure is a median over several runs with min and
// max; goals are printed next to them, nothing fails on a figure.
//
//	meshbench run --meshnode BIN --wgbare BIN --out out/bench.json
//	meshbench underlay-nats ...   (started by run inside a namespace)
//	meshbench profnode BIN ARGS   (stands in for meshnode with PROFILE=1)
//	meshbench dry --meshnode BIN  (one-node smoke test of the machinery)
//
// run's phases, in the order they run (--skip takes their names), one file
// each:
//
//	wg-throughput   throughput.go  scripts/bench/wg-throughput: veth, bare wireguard-go, mesh/wg
//	cost            cost.go        idle RSS and CPU of a 3-node mesh with JetStream on
//	lab-throughput  throughput.go  iperf3 in the mesh: underlay, bare wireguard-go pair, overlay
//	                tune.go        (TUNE=1) overlay throughput under other Go runtime settings
//	nats            nats.go        msgs/s and request-reply latency, overlay vs underlay
//	failure         failure.go     kill -9 a node until every survivor drops it
//	mesh            timetomesh.go  join → first ping and time to a full mesh, 3 and 8 nodes
//	scale           scale.go       20 nodes (5 core + 15 leaf) against 20 all core: healthy, leaf → leaf, RSS/CPU, NATS connections
//
// The 3-node mesh the middle four share is started by lab.go (which times
// it: the first time-to-mesh sample); bench.go runs the phases and
// report.go prints and writes the figures.
//
// Run it through scripts/bench/run, which builds the binaries and reads the
// environment knobs.
package main

import (
	"fmt"
	"os"
)

// phases are run's phases in the order runBench runs them.
var phases = []struct{ name, what string }{
	{"wg-throughput", "scripts/bench/wg-throughput: veth, bare wireguard-go, meshnode's mesh/wg device"},
	{"cost", "idle RSS and CPU of the nodes of a 3-node mesh with JetStream on"},
	{"lab-throughput", "iperf3 in the mesh: underlay, bare wireguard-go pair, meshnode overlay (TUNE=1: Go runtime variants)"},
	{"nats", "NATS msgs/s and request-reply p50/p99, overlay vs underlay"},
	{"failure", "kill -9 a node until every survivor marks it dead and drops its route"},
	{"mesh", "time to mesh: join → first overlay ping, last join → full mesh, 3 and 8 nodes"},
	{"scale", "SCALE_NODES (20) nodes, default core + leaves vs all core: last join → healthy, leaf → leaf message, idle RSS/CPU, NATS connections"},
}

func usage() {
	fmt.Fprint(os.Stderr, "usage: meshbench run|underlay-nats|profnode|dry [flags]\n\nphases of run, in order (--skip takes their names):\n")
	for _, p := range phases {
		fmt.Fprintf(os.Stderr, "  %-15s %s\n", p.name, p.what)
	}
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runBench(os.Args[2:])
	case "profnode":
		err = runProfNode(os.Args[2:])
	case "dry":
		err = runDry(os.Args[2:])
	case "underlay-nats":
		err = runUnderlayServer(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshbench:", err)
		os.Exit(1)
	}
}
