// Command demo runs a real N-node mesh in network namespaces on this box:
//
//	sudo go run ./scripts/demo [--nodes 3] [--once] [--meshnode BIN]
//
// It creates network namespaces joined by a bridge, runs a real meshnode
// in each (init on the first, invite + join for the rest), waits until
// every node has every WireGuard peer and NATS route, prints each node's
// `meshnode status` and a NATS message published on the first node and
// received on the last, then keeps running until Ctrl-C and removes every
// namespace and process.
//
// It lives outside cmd/meshnode so the product binary does not link the
// lab (scripts/meshlab); it runs the meshnode binary given by --meshnode,
// or builds one from this checkout first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/scripts/meshlab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err == nil {
		return
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "demo:", err)
	os.Exit(1)
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: sudo go run ./scripts/demo [--nodes 3] [--once] [--meshnode BIN]\n\nflags:\n")
		fs.PrintDefaults()
	}
	nodes := fs.Int("nodes", 3, "how many nodes")
	once := fs.Bool("once", false, "exit after printing instead of running until Ctrl-C")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the mesh to complete")
	bin := fs.String("meshnode", "", "meshnode binary to run (default: build ./cmd/meshnode first)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *nodes < 1 || *nodes > 50 {
		return fmt.Errorf("--nodes %d: want 1-50", *nodes)
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root: it creates network namespaces and WireGuard interfaces (try: sudo go run ./scripts/demo)")
	}
	dir, err := os.MkdirTemp("", "meshnode-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *bin == "" {
		fmt.Println("building meshnode (go build ./cmd/meshnode)")
		t := time.Now()
		if *bin, err = meshlab.Build(ctx, dir); err != nil {
			return fmt.Errorf("%w\n(or pass --meshnode BIN)", err)
		}
		fmt.Printf("built %s in %s\n", *bin, time.Since(t).Round(100*time.Millisecond))
	} else if _, err := os.Stat(*bin); err != nil {
		return fmt.Errorf("--meshnode: %w", err)
	}
	lab, err := meshlab.New(*bin, dir)
	if err != nil {
		return err
	}
	lab.Fast = true
	defer func() {
		fmt.Println("cleaning up: stopping nodes, removing namespaces")
		lab.Close()
	}()

	names := make([]string, *nodes)
	for i := range names {
		names[i] = fmt.Sprintf("node%d", i+1)
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	fmt.Printf("starting %d nodes in network namespaces (logs in %s)\n", *nodes, dir)
	if err := lab.StartMesh(wctx, "demo", names); err != nil {
		return err
	}
	if err := lab.WaitComplete(wctx); err != nil {
		fmt.Fprint(os.Stderr, lab.Tails(15))
		return err
	}
	fmt.Printf("mesh complete in %s: every node has every peer, handshakes and NATS routes\n\n", time.Since(start).Round(10*time.Millisecond))
	for _, n := range lab.Nodes {
		out, _ := n.Meshnode("status", "--state", n.State)
		fmt.Printf("[%s] meshnode status\n%s\n", n.Name, out)
	}
	first, last := lab.Nodes[0], lab.Nodes[len(lab.Nodes)-1]
	msg := fmt.Sprintf("hello from %s at %s", first.Name, time.Now().Format(time.TimeOnly))
	got, err := lab.SendAcross(wctx, first, last, "demo.hello", msg)
	if err != nil {
		return err
	}
	fmt.Printf("NATS: published on %s, received on %s: %q\n", first.Name, last.Name, got)
	if *once {
		return nil
	}
	fmt.Println("\nthe mesh keeps running; try: sudo ip netns exec", first.NS.Name, "wg show", first.Iface)
	fmt.Println("press Ctrl-C to stop and clean up")
	<-ctx.Done()
	return nil
}
