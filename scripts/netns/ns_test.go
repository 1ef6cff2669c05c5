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

// A partitioned namespace neither reaches nor is reached across the bridge
// while its own link stays up; Heal brings it back.
func TestBridgePartition(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ping")
	netnstest.RequireTool(t, "nft")
	br := netnstest.NewBridge(t)
	a, b, c := netnstest.New(t, "ta"), netnstest.New(t, "tb"), netnstest.New(t, "tc")
	netnstest.Attach(t, br, a, "eth0", "10.213.1.1/24")
	netnstest.Attach(t, br, b, "eth0", "10.213.1.2/24")
	netnstest.Attach(t, br, c, "eth0", "10.213.1.3/24")
	ping := func(from *netns.NS, to string) error {
		_, err := from.Run("ping", "-c1", "-W1", to)
		return err
	}
	if err := ping(a, "10.213.1.2"); err != nil {
		t.Fatalf("before the partition: %v", err)
	}
	if err := br.Partition(b); err != nil {
		t.Fatal(err)
	}
	if err := ping(a, "10.213.1.2"); err == nil {
		t.Fatal("a reaches the partitioned b")
	}
	if err := ping(b, "10.213.1.3"); err == nil {
		t.Fatal("the partitioned b reaches c")
	}
	if err := ping(a, "10.213.1.3"); err != nil {
		t.Fatalf("a and c, both outside the partition: %v", err)
	}
	if out, err := b.Run("ip", "-o", "link", "show", "eth0"); err != nil || !strings.Contains(out, "state UP") {
		t.Fatalf("the partitioned box's link is not up (it must not notice): %v\n%s", err, out)
	}
	if err := br.Heal(b); err != nil {
		t.Fatal(err)
	}
	if err := ping(a, "10.213.1.2"); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
	// The table is made once; later partitions reuse it.
	if err := br.Partition(a); err != nil {
		t.Fatal(err)
	}
	if err := br.Heal(a); err != nil {
		t.Fatal(err)
	}
	stranger := netnstest.New(t, "tx")
	if err := br.Partition(stranger); err == nil || !strings.Contains(err.Error(), stranger.Name) {
		t.Fatalf("partitioning a namespace that is not on the bridge: %v", err)
	}
}
