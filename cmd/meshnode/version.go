package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

func runVersion(ctx context.Context, args []string) error {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	fmt.Println("meshnode", v)
	return nil
}
