package natsnode

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A leaf's clients reach the core's JetStream under the core's domain
// (see leafOptions); these tests show the data plane and the admin role
// work through it as they do on a core server.

// leafJetStream is a lone JetStream core, a leaf server of member mLeaf
// with role, and a member client of the leaf server.
type leafJetStream struct {
	core, leaf *testNode
	admin      *nats.Conn // the core's in-process client
	client     *nats.Conn // a member client of the leaf server
}

func newLeafJetStream(t *testing.T, role Role) *leafJetStream {
	t.Helper()
	lm := newLeafMesh(t)
	mCore, mLeaf, mClient := lm.ca.member(t, "core"), lm.ca.member(t, "leaf"), lm.ca.member(t, "client")
	lm.allowed.set(mLeaf, true)
	roles := &roleSet{}
	roles.set(mLeaf, role)
	cfg := lm.coreConfig(mCore, true)
	cfg.Role = roles.role
	core := startNode(t, cfg, nil)
	leaf := startNode(t, lm.leafConfig(mLeaf, newKeySet(mClient)), []Member{leafMember(core)})
	waitLeafs(t, core, 1)
	nc, err := nats.Connect(leaf.ClientURL(), mClient.nkeyOpt(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l := &leafJetStream{core: core, leaf: leaf, admin: connectLocal(t, core), client: nc}
	// The core's interest in its domain mappings reaches the leaf
	// asynchronously.
	js, _ := jetstream.New(nc)
	waitFor(t, 10*time.Second, "the JetStream API to answer the leaf's client", func() bool {
		c, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		_, err := js.AccountInfo(c)
		return err == nil
	})
	return l
}

// TestLeafMemberDataPlane: a member client of a leaf server uses a push
// consumer an admin made, with flow control ($JS.FC) and acks ($JS.ACK),
// beyond the point where the consumer stalls without flow-control
// replies; and puts into and gets from a KV bucket ($KV, DIRECT.GET).
func TestLeafMemberDataPlane(t *testing.T) {
	l := newLeafJetStream(t, RoleMember)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ajs, _ := jetstream.New(l.admin)
	if _, err := ajs.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	// nats-server sends a flow-control request past 1 MiB pending and
	// stops delivering past 2 MiB (JsFlowControlMaxPending/16) until it
	// is answered: 48 messages of 64 KiB need answers.
	const n, size = 48, 64 << 10
	payload := bytes.Repeat([]byte("x"), size)
	for i := range n {
		if _, err := ajs.Publish(ctx, fmt.Sprintf("s.%d", i), payload); err != nil {
			t.Fatal(err)
		}
	}
	legacy, err := l.admin.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.AddConsumer("S", &nats.ConsumerConfig{
		Durable: "PUSH", DeliverSubject: "deliver.leaf", AckPolicy: nats.AckExplicitPolicy,
		FlowControl: true, Heartbeat: time.Second, MaxAckPending: -1,
	}); err != nil {
		t.Fatal(err)
	}
	sub, err := l.client.SubscribeSync("deliver.leaf")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	got, fc := 0, 0
	deadline := time.Now().Add(20 * time.Second)
	for got < n {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("%d of %d messages through the leaf (%d flow-control requests answered): %v", got, n, fc, err)
		}
		if m.Header.Get("Status") == "100" {
			if m.Reply != "" { // flow control; a heartbeat has no reply
				fc++
				if err := m.Respond(nil); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		got++
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if fc == 0 {
		t.Errorf("no flow-control request reached the leaf's client")
	}
	l.client.Flush()
	waitFor(t, 10*time.Second, "the leaf client's acks to reach the consumer", func() bool {
		ci, err := legacy.ConsumerInfo("S", "PUSH")
		return err == nil && ci.AckFloor.Stream == n
	})

	if _, err := ajs.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "B", Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(l.client)
	kv, err := js.KeyValue(ctx, "B")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("from the leaf")); err != nil {
		t.Fatal(err)
	}
	akv, _ := ajs.KeyValue(ctx, "B")
	if e, err := akv.Get(ctx, "k"); err != nil || string(e.Value()) != "from the leaf" {
		t.Fatalf("the core reads %v, %v", e, err)
	}
	if _, err := akv.Put(ctx, "k", []byte("from the core")); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "from the core" {
		t.Fatalf("the leaf's client reads %v, %v", e, err)
	}
}

// TestLeafAdminUsesJetStream: an admin's leaf connection carries no
// permissions of ours, and the leaf box's own client administers the
// core's JetStream through it: it creates a stream, a KV bucket and an
// object store, watches the bucket and reads back an object (both
// through consumers it creates).
func TestLeafAdminUsesJetStream(t *testing.T) {
	l := newLeafJetStream(t, RoleAdmin)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	js, _ := jetstream.New(connectLocal(t, l.leaf))
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	ajs, _ := jetstream.New(l.admin)
	if _, err := ajs.Stream(ctx, "S"); err != nil {
		t.Fatalf("the stream the admin leaf made is not on the core: %v", err)
	}

	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "B", Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	akv, _ := ajs.KeyValue(ctx, "B")
	if _, err := akv.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	for e := range w.Updates() {
		if e == nil {
			continue // the end of the initial values
		}
		if string(e.Value()) != "v1" {
			t.Fatalf("watch delivered %q, want v1", e.Value())
		}
		break
	}

	obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "O", Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("object "), 100_000) // several chunks
	if _, err := obs.PutBytes(ctx, "o", data); err != nil {
		t.Fatal(err)
	}
	back, err := obs.GetBytes(ctx, "o")
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("object read back through the leaf: %d bytes, %v", len(back), err)
	}
}
