// Package netnstest is the *testing.T side of scripts/netns: the root and
// tool checks every namespace test starts with, and constructors that
// remove what they made when the test ends. Only _test.go files import it,
// so nothing that ships links package testing through the harness.
//
// Tests that need root call RequireRoot first: outside CI they skip with the
// reason; with CI=true they fail, because CI runs as root and a skipped
// namespace test would hide a broken data plane. scripts/test finds the
// packages that need root by grepping for "netnstest.RequireRoot(".
package netnstest

import (
	"os"
	"os/exec"
	"testing"

	"github.com/meshnode/meshnode/scripts/netns"
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

// New creates a namespace with loopback up and removes it (and every process
// still running in it) when the test ends.
func New(t testing.TB, prefix string) *netns.NS {
	t.Helper()
	ns, err := netns.Create(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Delete)
	return ns
}

// Veth is netns.CreateVeth that fails the test on error.
func Veth(t testing.TB, a *netns.NS, addrA string, b *netns.NS, addrB string) (string, string) {
	t.Helper()
	ia, ib, err := netns.CreateVeth(a, addrA, b, addrB)
	if err != nil {
		t.Fatal(err)
	}
	return ia, ib
}

// NewBridge is netns.CreateBridge, removed when the test ends.
func NewBridge(t testing.TB) *netns.Bridge {
	t.Helper()
	br, err := netns.CreateBridge()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Delete)
	return br
}

// Attach is Bridge.Connect that fails the test on error.
func Attach(t testing.TB, br *netns.Bridge, ns *netns.NS, ifname, cidr string) {
	t.Helper()
	if err := br.Connect(ns, ifname, cidr); err != nil {
		t.Fatal(err)
	}
}
