package main

import (
	"context"
	"os"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
)

// runMetrics prints what GET /metrics serves: the same text a Prometheus
// scrape of --metrics-addr gets, read over the local API socket.
func runMetrics(ctx context.Context, args []string) error {
	fs := newFlagSet("metrics", "")
	state := stateFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	text, err := api.NewClient(identity.StateDir(*state)).Metrics(ctx)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(text)
	return err
}
