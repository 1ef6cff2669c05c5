package meshlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build compiles the meshnode binary into dir, static as shipped
// (CGO_ENABLED=0), and returns its path. The lab runs a real binary, not
// the caller re-executed: the caller is a test or a tool, and the product
// must not link the harness. Build runs the go command by package path, so
// it works from anywhere inside the module.
func Build(ctx context.Context, dir string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building meshnode needs the go command: %w", err)
	}
	bin := filepath.Join(dir, "meshnode")
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", bin, "github.com/meshnode/meshnode/cmd/meshnode")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build meshnode: %w\n%s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}
