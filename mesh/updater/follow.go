package updater

import (
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// How an agent learns of the published release, with no more than a
// member's rights.
//
// On a leaf box every JetStream request crosses the leaf connection, where
// the core applies the member permissions (natsnode/perms.go): no consumer
// may be created there, so neither a KV watch nor an Object Store Get
// works. What a member may do is enough:
//
//   - every put of LatestKey is also an ordinary NATS message on the key's
//     subject, so the agent subscribes to it and hears of a release the
//     moment it is published, as a watch would; on a core box only:
//     nats-server keeps $KV.> off a leaf connection between JetStream
//     domains (natsnode/leaf.go), so a leaf box hears nothing there;
//   - that message is core NATS, at most once: a box whose connection or
//     leaf link was down when the release went out would never hear of it,
//     nor would a leaf box at all. So the agent also reads the key (kv.Get, a direct get) when it
//     starts, when a trial ends blessed (a release passed over during the
//     trial is looked at again) and every PollEvery, jittered.
//
// Every put heard is handled, as a watch delivers every put (an admin who
// publishes the same release again, say after a failed write, gets it
// tried again). A value read is handled only when it differs from the last
// one handled (remembered by its hash): a poll that finds the release it
// already took, refused or passed over does nothing. A failed download is
// forgotten, so the next read tries it again.

// latestSubject is the NATS subject of LatestKey's puts (the KV's wire
// format: "$KV.<bucket>.<key>").
const latestSubject = "$KV." + KVBucket + "." + LatestKey

// Headers that mark a KV message as no value (a delete or purge marker).
const (
	hdrKVOperation = "KV-Operation"
	hdrMarker      = "Nats-Marker-Reason"
)

// listen subscribes to latestSubject; the channel holds the newest value
// heard and not yet handled (older ones are dropped: a burst of puts is one
// release to look at, the last).
func (a *Agent) listen(nc *nats.Conn) (<-chan []byte, error) {
	heard := make(chan []byte, 1)
	_, err := nc.Subscribe(latestSubject, func(m *nats.Msg) {
		if m.Header.Get(hdrKVOperation) != "" || m.Header.Get(hdrMarker) != "" {
			return
		}
		// The only sender: the subscription calls this one message at a
		// time, so after the drain the send cannot block.
		select {
		case <-heard:
		default:
		}
		heard <- m.Data
	})
	return heard, err
}

// follow takes each published release, heard or read, until ctx ends.
func (a *Agent) follow(ctx context.Context, nc *nats.Conn, heard <-chan []byte) {
	js, err := jetstream.New(nc)
	if err != nil {
		a.cfg.Log.Error("update agent: JetStream", "err", err)
		return
	}
	var (
		kv      jetstream.KeyValue // bound on the first read that finds the bucket
		seen    [sha256.Size]byte  // the hash of the last value handled
		blessed = a.blessed
		poll    = time.NewTimer(0) // the first read at once
	)
	defer poll.Stop()
	for {
		var data []byte
		read := true
		select {
		case <-ctx.Done():
			return
		case data = <-heard:
			read = false
		case <-blessed:
			blessed, seen = nil, [sha256.Size]byte{}
			data = a.readLatest(ctx, js, &kv)
		case <-poll.C:
			data = a.readLatest(ctx, js, &kv)
			poll.Reset(jittered(a.cfg.PollEvery, rand.Float64()))
		}
		if data == nil {
			continue
		}
		h := sha256.Sum256(data)
		if read && h == seen {
			continue
		}
		seen = h
		if !a.published(ctx, js, data) {
			seen = [sha256.Size]byte{}
		}
	}
}

// readLatest returns LatestKey's value, or nil when there is none (no
// release published yet, no JetStream, or the read failed: the next poll
// tries again). *kv is bound here and dropped after an error, so a bucket
// an admin deleted and created again is found.
func (a *Agent) readLatest(ctx context.Context, js jetstream.JetStream, kv *jetstream.KeyValue) []byte {
	if *kv == nil {
		b, err := js.KeyValue(ctx, KVBucket)
		if err != nil {
			a.cfg.Log.Debug("update agent: reading the published release", "bucket", KVBucket, "err", err)
			return nil
		}
		*kv = b
	}
	e, err := (*kv).Get(ctx, LatestKey)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted) {
			*kv = nil
		}
		a.cfg.Log.Debug("update agent: reading the published release", "key", latestSubject, "err", err)
		return nil
	}
	return e.Value()
}

// jittered spreads a period over [d/2, 3d/2) by u in [0, 1), so that
// boxes that started together (a power cut, a mesh restart) do not read
// together; the mean stays d.
func jittered(d time.Duration, u float64) time.Duration {
	return d/2 + time.Duration(u*float64(d))
}
