package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/meshnode/meshnode/scripts/meshlab"
)

func runDemo(ctx context.Context, args []string) error {
	fs := newFlagSet("demo", "[--nodes 3] [--once]")
	nodes := fs.Int("nodes", 3, "how many nodes")
	once := fs.Bool("once", false, "exit after printing instead of running until Ctrl-C")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the mesh to complete")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *nodes < 1 || *nodes > 50 {
		return fmt.Errorf("--nodes %d: want 1-50", *nodes)
	}
	if os.Geteuid() != 0 {
		return errors.New("demo needs root: it creates network namespaces and WireGuard interfaces (try: sudo meshnode demo)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "meshnode-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lab, err := meshlab.New(self, dir)
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
		for _, n := range lab.Nodes {
			fmt.Fprintf(os.Stderr, "--- %s log tail:\n%s\n", n.Name, n.Tail(15))
		}
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
