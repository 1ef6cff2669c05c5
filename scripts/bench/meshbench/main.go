// Command meshbench is the multi-node half of scripts/bench/run: it starts
// real meshnode processes in network namespaces (scripts/netns Lab) and
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
// Run it through scripts/bench/run, which builds the binaries and reads the
// environment knobs.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: meshbench run|underlay-nats|profnode|dry [flags]")
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
