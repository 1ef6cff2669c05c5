package main

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/meshnode/meshnode/mesh"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

func init() {
	// The node reports it (meshnode_build_info); set before any node runs.
	mesh.Version = buildVersion()
}

// buildVersion is the stamped version, else the module version of a
// `go install`ed binary, else "dev".
func buildVersion() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return v
}

func runVersion(ctx context.Context, args []string) error {
	fmt.Println("meshnode", buildVersion())
	return nil
}
