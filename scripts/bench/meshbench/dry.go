package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// runDry is `meshbench dry --meshnode BIN`: a one-node smoke test of the
// benchmark's own machinery (lab start, NATS load generator over the
// overlay and the underlay server, cost sampling) that needs no join.
func runDry(args []string) error {
	if len(args) != 2 || args[0] != "--meshnode" {
		return fmt.Errorf("usage: meshbench dry --meshnode BIN")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	s := &settings{meshnode: args[1], self: self, natsRuns: 1, natsTime: time.Second, natsMsgs: 100000, latCount: 200, idle: 3 * time.Second}
	r := &Report{Machine: machine(), Checks: map[string]string{}}
	ctx := context.Background()
	err = withLab(ctx, s, 1, func(l *benchLab, t meshTiming) error {
		if err := idleCost(ctx, s, r, l); err != nil {
			return fmt.Errorf("cost: %w", err)
		}
		if err := natsBench(ctx, s, r, l); err != nil {
			return fmt.Errorf("nats: %w", err)
		}
		return nil
	})
	r.Print(os.Stdout)
	return err
}
