package main

import (
	"context"

	"github.com/meshnode/meshnode/image/boot"
)

// On the appliance meshnode is /init: image/boot does the PID 1 work
// (mounts, modules, partitions, config, network) and then calls
// runAppliance with what it found.
func init() {
	pid1 = func() { boot.Main(runAppliance) }
}

// runAppliance runs the node on the appliance. First boot (bc.FirstBoot):
// create the identity in bc.StateDir, join bc.Config.Join with
// bc.Config.Token, then call bc.ConsumeToken. Later boots: up from
// bc.StateDir. Either way call bc.Ready(name, overlay) once the node is up,
// and return only when ctx ends or on error (wrap boot.ErrConfig for a
// config problem, boot.ErrFatal to reboot).
func runAppliance(ctx context.Context, bc boot.BootConfig) error {
	return applianceNode(ctx, bc)
}
