package netns_test

import (
	"strings"
	"testing"

	"github.com/meshnode/meshnode/scripts/netns"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
)

// Two namespaces on one bridge reach each other, and nothing is left behind.
func TestBridgePing(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ping")
	br := netnstest.NewBridge(t)
	a, b := netnstest.New(t, "ta"), netnstest.New(t, "tb")
	netnstest.Attach(t, br, a, "eth0", "10.213.0.1/24")
	netnstest.Attach(t, br, b, "eth0", "10.213.0.2/24")
	if out, err := a.Run("ping", "-c1", "-W2", "10.213.0.2"); err != nil {
		t.Fatalf("ping across the bridge: %v\n%s", err, out)
	}
	name := a.Name
	a.Delete()
	out, _ := netns.Run("ip", "netns", "list")
	if strings.Contains(out, name+" ") || strings.Contains(out, name+"\n") {
		t.Fatalf("namespace %s still listed after Delete:\n%s", name, out)
	}
}
