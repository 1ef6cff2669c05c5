package netns_test

import (
	"strings"
	"testing"

	"github.com/meshnode/meshnode/scripts/netns"
)

// Two namespaces on one bridge reach each other, and nothing is left behind.
func TestBridgePing(t *testing.T) {
	netns.RequireRoot(t)
	netns.RequireTool(t, "ping")
	br := netns.NewBridge(t)
	a, b := netns.New(t, "ta"), netns.New(t, "tb")
	br.Attach(t, a, "eth0", "10.213.0.1/24")
	br.Attach(t, b, "eth0", "10.213.0.2/24")
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
