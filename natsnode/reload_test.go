package natsnode

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Route reloads must not bounce clients: every ReloadOptions re-runs
// authorization for all connections.
func TestReloadKeepsClients(t *testing.T) {
	ca := newTestCA(t)
	m1 := ca.member(t, "m1")
	ks := newKeySet(m1)
	a := baseConfig(t, "a", ks.has)
	b := baseConfig(t, "b", nil)
	na := startNode(t, a, nil)
	nb := startNode(t, b, nil)

	closed := make(chan string, 4)
	remote, err := nats.Connect(na.ClientURL(), m1.nkeyOpt(), nats.NoReconnect(),
		nats.ClosedHandler(func(*nats.Conn) { closed <- "nkey client" }))
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	local, err := na.ConnectInProcess(nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { closed <- "in-process client" }))
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()

	// A membership change reloads the route set (and with it every
	// connection's authorization).
	na.SetMembers(members(na, nb))
	nb.SetMembers(members(na, nb))
	waitRoutes(t, 1, na, nb)
	waitFor(t, 5*time.Second, "reload logged", func() bool { return na.log.contains("nats routes reloaded") })
	for _, nc := range []*nats.Conn{remote, local} {
		if err := nc.Flush(); err != nil {
			t.Fatalf("connection broken by reload: %v", err)
		}
	}
	select {
	case who := <-closed:
		t.Fatalf("%s closed by a route reload", who)
	default:
	}
	// Revocation is still enforced after the reload.
	ks.set(m1, false)
	na.Recheck()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("revoked client not closed after a reload")
	}
}
