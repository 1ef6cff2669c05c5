package updater

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// objectRig is an Object Store ObjectBucket with a test object "obj" of
// several chunks, put between two other objects so its chunks are not
// the only messages in the stream.
func objectRig(t *testing.T) (jetstream.JetStream, jetstream.ObjectStore, jetstream.Stream, []byte) {
	t.Helper()
	srv := natsServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: ObjectBucket})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16,000 bytes
	small := &jetstream.ObjectMetaOptions{ChunkSize: 1000}
	for _, o := range []struct {
		name string
		data []byte
	}{{"before", []byte(strings.Repeat("b", 3000))}, {"obj", data}, {"after", []byte(strings.Repeat("a", 3000))}} {
		if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: o.name, Opts: small}, bytes.NewReader(o.data)); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := js.Stream(ctx, objectStream)
	if err != nil {
		t.Fatal(err)
	}
	return js, obs, stream, data
}

func TestFetchObject(t *testing.T) {
	js, obs, stream, data := objectRig(t)
	ctx := context.Background()
	var got int
	count := func(n int) { got += n }

	b, err := fetchObject(ctx, obs, stream, "obj", uint64(len(data)), count)
	if err != nil || !bytes.Equal(b, data) || got != len(data) {
		t.Fatalf("whole object: %d bytes (progress %d), %v; want %d bytes", len(b), got, err, len(data))
	}

	// More in the store than the manifest says: one byte over, no more.
	got = 0
	b, err = fetchObject(ctx, obs, stream, "obj", 2500, count)
	if err != nil || !bytes.Equal(b, data[:2501]) || got != 2501 {
		t.Fatalf("object larger than the limit: %d bytes (progress %d), %v; want the first 2501", len(b), got, err)
	}

	if _, err := fetchObject(ctx, obs, stream, "nothing", 100, count); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("missing object: %v", err)
	}

	// Info that lies about the digest (any member may publish into the
	// stream), then about the size.
	info, err := obs.GetInfo(ctx, "obj")
	if err != nil {
		t.Fatal(err)
	}
	putInfo := func(change func(*jetstream.ObjectInfo)) {
		t.Helper()
		i := *info
		change(&i)
		b, _ := json.Marshal(i)
		subj := "$O." + ObjectBucket + ".M." + base64.URLEncoding.EncodeToString([]byte("obj"))
		if _, err := js.Publish(ctx, subj, b); err != nil {
			t.Fatal(err)
		}
	}
	putInfo(func(i *jetstream.ObjectInfo) {
		i.Digest = "SHA-256=" + base64.URLEncoding.EncodeToString(make([]byte, 32))
	})
	if _, err := fetchObject(ctx, obs, stream, "obj", uint64(len(data)), count); !errors.Is(err, jetstream.ErrDigestMismatch) {
		t.Fatalf("wrong digest: %v", err)
	}
	putInfo(func(i *jetstream.ObjectInfo) { i.Size-- })
	if _, err := fetchObject(ctx, obs, stream, "obj", uint64(len(data)), count); err == nil || !strings.Contains(err.Error(), "16000 bytes in 16 chunks, the object's info says 15999") {
		t.Fatalf("wrong size: %v", err)
	}
	putInfo(func(i *jetstream.ObjectInfo) { i.Chunks++ })
	if _, err := fetchObject(ctx, obs, stream, "obj", uint64(len(data)), count); err == nil || err.Error() != "chunk 17 of 17 is missing" {
		t.Fatalf("a chunk missing: %v", err)
	}
	putInfo(func(i *jetstream.ObjectInfo) {
		i.Opts = &jetstream.ObjectMetaOptions{Link: &jetstream.ObjectLink{Bucket: ObjectBucket, Name: "after"}}
	})
	if _, err := fetchObject(ctx, obs, stream, "obj", uint64(len(data)), count); err == nil || !strings.Contains(err.Error(), "is a link") {
		t.Fatalf("a link: %v", err)
	}
}

func TestJittered(t *testing.T) {
	for _, tc := range []struct {
		u    float64
		want string
	}{{0, "30s"}, {0.5, "1m0s"}, {0.999999, "1m29.99994s"}} {
		if got := jittered(DefaultPollEvery, tc.u).String(); got != tc.want {
			t.Errorf("jittered(%s, %v) = %s, want %s", DefaultPollEvery, tc.u, got, tc.want)
		}
	}
}
