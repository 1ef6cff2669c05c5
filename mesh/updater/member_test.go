package updater

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshnode/meshnode/image/update"
)

// memberPublishDeny is what the core refuses an ordinary member, on a
// member's client connection and on a leaf box's leaf connection alike.
// Copied from natsnode/perms.go (memberDeny, unexported there): keep the
// two in step. The entries that matter here are the consumer ones: an
// agent on a leaf box reaches JetStream only through its leaf connection.
var memberPublishDeny = []string{
	"$SYS.>",
	server.JSApiStreamCreate, server.JSApiStreamUpdate, server.JSApiStreamDelete, server.JSApiStreamPurge,
	server.JSApiStreamSnapshot, server.JSApiStreamRestore, server.JSApiMsgDelete, server.JSApiStreamCancelMove,
	"$JS.API.STREAM.PEER.>", "$JS.API.STREAM.LEADER.>",
	"$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DURABLE.>", "$JS.API.CONSUMER.DELETE.>", "$JS.API.CONSUMER.PAUSE.>",
	"$JS.API.CONSUMER.UNPIN.>", "$JS.API.CONSUMER.RESET.>", "$JS.API.CONSUMER.PEER.>", "$JS.API.CONSUMER.LEADER.>",
	"$JS.API.META.>", "$JS.API.SERVER.>", "$JS.API.ACCOUNT.>",
	"$JS.SNAPSHOT.>",
}

// memberServer is natsServer with two users: "admin" (unrestricted, also
// whoever connects without credentials) and "member" with natsnode's
// member permissions, plus subDeny on top of its subscribe denies.
func memberServer(t *testing.T, subDeny ...string) *server.Server {
	t.Helper()
	member := &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: memberPublishDeny},
		Subscribe: &server.SubjectPermission{Deny: append([]string{"$SYS.>", "$JS.API.>"}, subDeny...)}, // natsnode memberSubDeny
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: "member", Password: "member", Permissions: member},
		},
		NoAuthUser: "admin",
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
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

type writerFunc func([]byte)

func (f writerFunc) Write(b []byte) (int, error) { f(b); return len(b), nil }
