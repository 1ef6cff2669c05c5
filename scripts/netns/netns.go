// Package netns is the test and demo harness for real network namespaces:
// it creates namespaces and veth links, runs commands inside them and tears
// everything down again, even when a test fails.
//
// Tests that need root call RequireRoot first: outside CI they skip with the
// reason; with CI=true they fail, because CI runs as root and a skipped
// namespace test would hide a broken data plane.
package netns

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireRoot fails (CI=true) or skips (elsewhere) the test unless it runs as
// root with /dev/net/tun and the ip command available.
func RequireRoot(t testing.TB) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "needs root (TUN devices and network namespaces)"
	default:
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			why = "needs /dev/net/tun: " + err.Error()
		} else if _, err := exec.LookPath("ip"); err != nil {
			why = "needs the ip command (iproute2)"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but this test cannot run: %s", why)
	}
	t.Skipf("skipping: %s (runs for real in CI)", why)
}

// RequireTool is RequireRoot's counterpart for an external program such as
// wg or iperf3: fatal in CI, a skip elsewhere.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s is not installed: %v", name, err)
	}
	t.Skipf("skipping: %s not installed", name)
	return ""
}

// Run runs a command and returns its combined output, with the command line
// in the error.
func Run(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
