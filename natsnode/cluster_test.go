package natsnode

import (
	"testing"
)

func TestTwoNodeForwarding(t *testing.T) {
	a := baseConfig(t, "a", nil)
	b := baseConfig(t, "b", nil)
	ms := []Member{
		{ServerName: "a", Addr: loopback, RoutePort: a.Cluster.Port},
		{ServerName: "b", Addr: loopback, RoutePort: b.Cluster.Port},
	}
	na := startNode(t, a, ms)
	nb := startNode(t, b, ms)
	waitRoutes(t, 1, na, nb)
	checkForwarding(t, na, nb)
	checkForwarding(t, nb, na)
	if up, exp := na.Routes(); up != 1 || exp != 1 {
		t.Fatalf("routes = %d/%d, want 1/1", up, exp)
	}
}
