package updater

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshnode/meshnode/image/update"
	"github.com/meshnode/meshnode/natsnode"
)

// memberServer is natsServer with two users: "admin" (unrestricted, also
// whoever connects without credentials) and "member" with natsnode's
// member permissions, plus subDeny on top of its subscribe denies.
func memberServer(t *testing.T, subDeny ...string) *server.Server {
	t.Helper()
	member := natsnode.ClientPermissions(natsnode.RoleMember)
	member.Subscribe.Deny = append(member.Subscribe.Deny, subDeny...)
	return startServer(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: "member", Password: "member", Permissions: member},
		},
		NoAuthUser: "admin",
	})
}

func asMember(_ *Config, n *fakeNode) { n.opts = []nats.Option{nats.UserInfo("member", "member")} }

// TestPublishReachesMemberAgent: an agent whose connection has only a
// member's rights (a leaf box, where every JetStream request crosses the
// leaf connection and meets the core's member permissions) learns of a
// published release and downloads it without creating a consumer.
func TestPublishReachesMemberAgent(t *testing.T) {
	srv := memberServer(t)
	esp := freshESP(t)
	r := newRig(t, srv, esp, filepath.Join(t.TempDir(), "u.json"), "a", update.Running{Generation: 1, Release: "v1"}, time.Minute, asMember)
	if err := Publish(context.Background(), r.admin, bundle(t, 2), Release{Reboot: RebootManual, Names: []string{"edge-1"}}, 1, nil); err != nil {
		t.Fatal(err)
	}
	s := r.waitStatus(func(s NodeStatus) bool { return s.Phase == PhaseWritten || s.Phase == PhaseFailed })
	if s.Phase != PhaseWritten || s.Target != 2 {
		t.Fatalf("status %+v", s)
	}
	for name, want := range map[string]string{"meshnode/b/vmlinuz": "kernel 2", "meshnode/b/initrd.img": string(bundle(t, 2).Files[update.FileInitramfs])} {
		if got, _ := esp.ReadFile(name); string(got) != want {
			t.Fatalf("slot b %s: %d bytes %q…, want %d bytes", name, len(got), got[:min(len(got), 12)], len(want))
		}
	}
	if !strings.Contains(s.Message, "reboot the box") {
		t.Fatalf("status %+v", s)
	}
}

// TestMissedReleaseFoundByPoll: a box that cannot hear the release's
// message (here: its subscription is denied; on a real box, a connection
// or leaf link that was down when it went out) finds it by reading the key,
// at start and every PollEvery, and tries a failed download again.
func TestMissedReleaseFoundByPoll(t *testing.T) {
	srv := memberServer(t, "$KV.>")
	admin, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	b := bundle(t, 2)
	if err := Publish(context.Background(), admin, b, Release{Reboot: RebootManual}, 1, nil); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(context.Background(), ObjectBucket)
	if err != nil {
		t.Fatal(err)
	}
	initrd := objectName(2, update.FileInitramfs)
	if err := obs.Delete(context.Background(), initrd); err != nil {
		t.Fatal(err)
	}
	esp := freshESP(t)
	r := newRig(t, srv, esp, filepath.Join(t.TempDir(), "u.json"), "a", update.Running{Generation: 1, Release: "v1"}, time.Minute,
		asMember, func(c *Config, _ *fakeNode) { c.PollEvery = 100 * time.Millisecond })
	s := r.waitStatus(func(s NodeStatus) bool { return s.Phase == PhaseFailed })
	if s.Target != 2 || !strings.Contains(s.Message, "download: "+initrd+": nats: object not found") {
		t.Fatalf("status %+v", s)
	}
	if _, err := obs.PutBytes(context.Background(), initrd, b.Files[update.FileInitramfs]); err != nil {
		t.Fatal(err)
	}
	s = r.waitStatus(func(s NodeStatus) bool { return s.Phase == PhaseWritten })
	if s.Target != 2 {
		t.Fatalf("status %+v", s)
	}
	if got, _ := esp.ReadFile("meshnode/b/initrd.img"); string(got) != string(b.Files[update.FileInitramfs]) {
		t.Fatalf("slot b initrd: %d bytes, want %d", len(got), len(b.Files[update.FileInitramfs]))
	}
}

// TestRepublishedReleaseHandledAgain: a release published twice is looked
// at twice, as a watch sees every put (an admin's way to have a box try
// again); only the backstop reads pass over a value already handled.
func TestRepublishedReleaseHandledAgain(t *testing.T) {
	srv := memberServer(t)
	refusals := make(chan string, 10)
	// The first read (no bucket yet) before the first publish: a read that
	// came after it would make its put handled twice.
	firstRead := make(chan struct{})
	var once sync.Once
	r := newRig(t, srv, freshESP(t), filepath.Join(t.TempDir(), "u.json"), "a", update.Running{Generation: 1, Release: "v1"}, time.Minute,
		asMember, func(c *Config, _ *fakeNode) {
			c.PollEvery = 50 * time.Millisecond
			c.Log = slog.New(slog.NewTextHandler(writerFunc(func(b []byte) {
				if bytes.Contains(b, []byte("reading the published release")) {
					once.Do(func() { close(firstRead) })
				}
			}), &slog.HandlerOptions{Level: slog.LevelDebug}))
			c.Say = func(l string) {
				t.Log(l)
				if strings.Contains(l, "refused:") {
					refusals <- l
				}
			}
		})
	bad := bundle(t, 2)
	bad.Manifest.Signature[0] ^= 1
	waitRefusal := func() {
		t.Helper()
		select {
		case l := <-refusals:
			if !strings.Contains(l, "bad signature") {
				t.Fatalf("refusal %q", l)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the published release was not refused")
		}
	}
	select {
	case <-firstRead:
	case <-time.After(20 * time.Second):
		t.Fatal("the agent never read the key")
	}
	for range 2 {
		if err := Publish(context.Background(), r.admin, bad, Release{Reboot: RebootNow}, 1, nil); err != nil {
			t.Fatal(err)
		}
		waitRefusal()
	}
	// Reads every 50 ms find the same value: no third refusal.
	select {
	case l := <-refusals:
		t.Fatalf("a value already handled was handled again: %q", l)
	case <-time.After(300 * time.Millisecond):
	}
}

// leafAuth admits every connection: leaf connections with perms, clients
// unrestricted.
type leafAuth struct{ perms *server.Permissions }

func (a leafAuth) Check(c server.ClientAuthentication) bool {
	if c.Kind() == server.LEAF {
		c.RegisterUser(&server.User{Permissions: a.perms})
	} else {
		c.RegisterUser(&server.User{})
	}
	return true
}

type writerFunc func([]byte)

func (f writerFunc) Write(b []byte) (int, error) { f(b); return len(b), nil }

// TestPublishReachesLeafAgent: the agent on a leaf box, connected to its
// own (leaf, JetStream-less) server without restriction, whose JetStream
// requests cross a leaf connection that the core gives a member's rights
// (natsnode.LeafPermissions), hears of a release an admin on the core
// published by its cue and takes it.
func TestPublishReachesLeafAgent(t *testing.T) {
	core, leaf := leafPair(t, natsnode.LeafPermissions(natsnode.RoleMember))
	esp := freshESP(t)
	r := newRig(t, core, esp, filepath.Join(t.TempDir(), "u.json"), "a", update.Running{Generation: 1, Release: "v1"}, time.Minute,
		func(c *Config, n *fakeNode) {
			n.srv = leaf
			// No read but the first, before the publish: the cue must
			// cross the leaf connection (the key's own message does not).
			c.PollEvery = time.Hour
		})
	// The leaf's interest in the cue reaches the core asynchronously.
	deadline := time.Now().Add(10 * time.Second)
	for !core.GlobalAccount().SubscriptionInterest(ReleasedSubject) {
		if time.Now().After(deadline) {
			t.Fatal("the agent's interest in the cue never reached the core")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := Publish(context.Background(), r.admin, bundle(t, 2), Release{Reboot: RebootManual}, 1, nil); err != nil {
		t.Fatal(err)
	}
	s := r.waitStatus(func(s NodeStatus) bool { return s.Phase == PhaseWritten || s.Phase == PhaseFailed })
	if s.Phase != PhaseWritten || s.Target != 2 {
		t.Fatalf("status %+v", s)
	}
	if got, _ := esp.ReadFile("meshnode/b/initrd.img"); string(got) != string(bundle(t, 2).Files[update.FileInitramfs]) {
		t.Fatalf("slot b initrd: %d bytes", len(got))
	}
	// The restriction the agent worked under is real: the leaf box's own
	// client cannot create a consumer through the leaf connection.
	local, err := nats.Connect(leaf.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	js, err := jetstream.New(local)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateConsumer(cctx, "KV_"+KVBucket, jetstream.ConsumerConfig{}); err == nil {
		t.Fatal("a consumer was created through the leaf connection")
	}
}

// leafPair starts a core server with JetStream and a leaf-node listener,
// and a JetStream-less server that is its leaf node with perms on its leaf
// connection, and waits for the leaf connection.
func leafPair(t *testing.T, perms *server.Permissions) (core, leaf *server.Server) {
	t.Helper()
	// As natsnode (leaf.go) does: the core names the JetStream domain and
	// the leaf's clients reach it under it ($JS.<domain>.API); $JS.API.>,
	// $KV.> and $OBJ.> then never cross the leaf connection, so the
	// agent's subscription to the key's subject hears nothing there and
	// its reads find the release.
	domain := map[string]string{server.DEFAULT_GLOBAL_ACCOUNT: natsnode.JetStreamDomain}
	// Leaf connections get perms the way natsnode gives them (clientAuth):
	// the core has no leaf users (nats-server would ignore their
	// permissions), so a leaf falls through to the client authenticator,
	// which registers it with them.
	copts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, JetStreamDomain: natsnode.JetStreamDomain,
		LeafNode:                   server.LeafNodeOpts{Host: "127.0.0.1", Port: -1},
		CustomClientAuthentication: leafAuth{perms},
	}
	core = startServer(t, copts)
	// nats-server writes the port it chose back into the options.
	u := &url.URL{Scheme: "nats-leaf", Host: fmt.Sprintf("127.0.0.1:%d", copts.LeafNode.Port)}
	leaf = startServer(t, &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JsAccDefaultDomain: domain,
		LeafNode: server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}}})
	deadline := time.Now().Add(10 * time.Second)
	for leaf.NumLeafNodes() != 1 || core.NumLeafNodes() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the leaf never connected to the core")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return core, leaf
}

// TestReleaseSubjectsNameTheBuckets: natsnode lets only admins publish
// into the release under these subjects (TestMemberCannotWriteRelease);
// a bucket renamed here without natsnode would silently reopen it.
func TestReleaseSubjectsNameTheBuckets(t *testing.T) {
	want := []string{"$KV." + KVBucket + ".>", "$O." + ObjectBucket + ".>", ReleasedSubject}
	if !slices.Equal(natsnode.ReleaseSubjects, want) {
		t.Fatalf("natsnode.ReleaseSubjects = %q, want %q", natsnode.ReleaseSubjects, want)
	}
}
