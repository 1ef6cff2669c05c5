package natsnode

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestStatsMove shows Stats reads the live server: traffic counters grow
// with messages, connections count clients, and JetStream reports the
// configured limits and the streams it holds.
func TestStatsMove(t *testing.T) {
	if got := (&Server{}).Stats(); got.Running || got.InMsgs != 0 {
		t.Fatalf("Stats of a server never started = %+v", got)
	}
	a := baseConfig(t, "a", nil)
	withJetStream(t, &a, 2)
	b := baseConfig(t, "b", nil)
	withJetStream(t, &b, 2)
	ms := []Member{
		{ServerName: "a", Addr: loopback, RoutePort: a.Cluster.Port},
		{ServerName: "b", Addr: loopback, RoutePort: b.Cluster.Port},
	}
	na := startNode(t, a, ms)
	nb := startNode(t, b, ms)
	waitOneMetaGroup(t, 2, na, nb)

	before := na.Stats()
	if !before.Running || !before.JetStream {
		t.Fatalf("Stats = %+v, want running with JetStream", before)
	}
	if before.MemoryLimit != 64<<20 || before.StoreLimit != 256<<20 {
		t.Fatalf("JetStream limits %d/%d, want the configured 64 MiB/256 MiB", before.MemoryLimit, before.StoreLimit)
	}
	nc := connectLocal(t, na)
	for i := range 50 {
		if err := nc.Publish(fmt.Sprintf("stats.%d", i), make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "a stream created", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "STATS", Subjects: []string{"st.>"}, Replicas: 2})
		return err == nil
	})
	waitFor(t, 5*time.Second, "counters to move", func() bool {
		st := na.Stats()
		return st.InMsgs >= before.InMsgs+50 && st.InBytes >= before.InBytes+50*100 && st.Connections >= 1 && st.Streams == 1 && st.MetaLeader
	})
}
