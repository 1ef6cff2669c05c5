package updater

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshnode/meshnode/image/update"
)

// Downloading a release without a consumer.
//
// An Object Store Get reads the chunks through an ordered consumer, which
// a member may not create (see follow.go). What it does underneath is
// open to a member: the object's info is the last message on its meta
// subject (ObjectStore.GetInfo, a direct get), and names the chunk
// subject (by the object's NUID), the chunk count, the size and the
// digest; each chunk is then the next message on that subject at or after
// a sequence (Stream.GetMsg with WithGetMsgSubject, a direct get too). One
// request per chunk (128 KiB by default), one after the other: slower than
// a consumer's push over a long round trip, and nothing stays behind on
// the server when the box goes away.

// objectStream is the stream behind ObjectBucket (the Object Store's wire
// format: "OBJ_<bucket>", chunks on "$O.<bucket>.C.<nuid>").
const (
	objectStream      = "OBJ_" + ObjectBucket
	objectChunkPrefix = "$O." + ObjectBucket + ".C."
)

func (a *Agent) download(ctx context.Context, js jetstream.JetStream, m *update.Manifest) (*update.Bundle, error) {
	a.say("downloading %s: %d bytes", m, m.TotalSize())
	a.set(func(s *NodeStatus) {
		s.Phase, s.Target, s.TargetRelease, s.Percent, s.Message = PhaseDownloading, m.Generation, m.Release, 0, ""
	})
	obs, err := js.ObjectStore(ctx, ObjectBucket)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", ObjectBucket, err)
	}
	stream, err := js.Stream(ctx, objectStream)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", ObjectBucket, err)
	}
	b := &update.Bundle{Manifest: m, Files: map[string][]byte{}}
	var done uint64
	total := m.TotalSize()
	lastPct := -1
	for _, f := range m.Files {
		name := objectName(m.Generation, f.Name)
		data, err := fetchObject(ctx, obs, stream, name, f.Size, func(n int) {
			done += uint64(n)
			if pct := int(done * 100 / max(total, 1)); pct != lastPct {
				lastPct = pct
				a.set(func(s *NodeStatus) { s.Percent = min(pct, 99) })
			}
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		b.Files[f.Name] = data
	}
	return b, nil
}

// fetchObject reads object name chunk by chunk, never more than limit+1
// bytes whatever the store holds: one byte over the manifest's size is
// enough for update.CheckFiles to refuse the file, so a larger object is
// returned cut there (its digest unchecked). A complete object must match
// its info's size and digest. progress is told the bytes of each chunk.
func fetchObject(ctx context.Context, obs jetstream.ObjectStore, stream jetstream.Stream, name string, limit uint64, progress func(n int)) ([]byte, error) {
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		return nil, err
	}
	if info.Opts != nil && info.Opts.Link != nil {
		return nil, errors.New("the object is a link, not a file")
	}
	if info.NUID == "" {
		return nil, jetstream.ErrBadObjectMeta
	}
	subject := objectChunkPrefix + info.NUID
	data := make([]byte, 0, min(info.Size, limit+1))
	sum := sha256.New()
	seq := uint64(1)
	for i := uint32(0); i < info.Chunks && uint64(len(data)) <= limit; i++ {
		msg, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil, fmt.Errorf("chunk %d of %d is missing", i+1, info.Chunks)
			}
			return nil, fmt.Errorf("chunk %d of %d: %w", i+1, info.Chunks, err)
		}
		seq = msg.Sequence + 1
		sum.Write(msg.Data)
		take := msg.Data[:min(uint64(len(msg.Data)), limit+1-uint64(len(data)))]
		data = append(data, take...)
		progress(len(take))
	}
	if uint64(len(data)) > limit {
		return data, nil
	}
	if uint64(len(data)) != info.Size {
		return nil, fmt.Errorf("%d bytes in %d chunks, the object's info says %d", len(data), info.Chunks, info.Size)
	}
	if jetstream.GetObjectDigestValue(sum) != info.Digest {
		return nil, jetstream.ErrDigestMismatch
	}
	return data, nil
}
