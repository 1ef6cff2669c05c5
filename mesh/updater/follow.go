package updater

import (
	"context"
	"errors"
	"fmt"
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
//     subject, and Publish sends a cue on ReleasedSubject after it, so the
//     agent subscribes to both and hears of a release the moment it is
//     published, as a watch would (the key's own message reaches core
//     boxes only: nats-server keeps $KV.> off a leaf connection between
//     JetStream domains, natsnode/leaf.go; the cue crosses it);
//   - those messages are core NATS, at most once: a box whose connection
//     or leaf link was down when the release went out would never hear of
//     it. So the agent also reads the key (kv.Get, a direct get) when it
//     starts, when a trial ends blessed (a release passed over during the
//     trial is looked at again) and every PollEvery, jittered.
//
// Every put is handled once, whichever way it is found: the agent
// remembers the KV revision (stream sequence) of the value it last
// handled, and a heard put is only the cue to read the key. A release
// published again is a new revision and is handled again, as a watch
// delivers every put (an admin's way to have a box try again); a poll that
// finds the revision it already took, refused or passed over does
// nothing, and so does the message of a put a poll read first. A failed
// download is forgotten, so the next read tries it again.

// latestSubject is the NATS subject of LatestKey's puts (the KV's wire
// format: "$KV.<bucket>.<key>").
const latestSubject = "$KV." + KVBucket + "." + LatestKey

// Headers that mark a KV message as no value (a delete or purge marker).
const (
	hdrKVOperation = "KV-Operation"
	hdrMarker      = "Nats-Marker-Reason"
)

// listen subscribes to latestSubject and ReleasedSubject; each put heard
// (not a delete or purge marker) and each cue is a cue in the channel,
// several in a row one cue.
func (a *Agent) listen(nc *nats.Conn) (<-chan struct{}, error) {
	heard := make(chan struct{}, 1)
	cue := func(m *nats.Msg) {
		if m.Header.Get(hdrKVOperation) != "" || m.Header.Get(hdrMarker) != "" {
			return
		}
		select {
		case heard <- struct{}{}:
		default: // a cue is pending already
		}
	}
	for _, subj := range []string{latestSubject, ReleasedSubject} {
		if _, err := nc.Subscribe(subj, cue); err != nil {
			return nil, fmt.Errorf("%s: %w", subj, err)
		}
	}
	return heard, nil
}

const (
	// heardReads and heardGap: a put's message can arrive before the put
	// is stored, or before the replica that answers a direct get has it,
	// so a cue reads until it finds a revision newer than the one last
	// handled, this many times this far apart.
	heardReads = 5
	heardGap   = 100 * time.Millisecond
)

// follow takes each published release, heard or read, until ctx ends.
func (a *Agent) follow(ctx context.Context, nc *nats.Conn, heard <-chan struct{}) {
	js, err := jetstream.New(nc)
	if err != nil {
		a.cfg.Log.Error("update agent: JetStream", "err", err)
		return
	}
	var (
		kv      jetstream.KeyValue // bound on the first read that finds the bucket
		seen    uint64             // the revision of the last value handled; 0: none
		blessed = a.blessed
		poll    = time.NewTimer(0) // the first read at once
	)
	defer poll.Stop()
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return
		case <-heard:
			for i := 0; i < heardReads; i++ {
				if i > 0 && sleepCtx(ctx, heardGap) != nil {
					return
				}
				if e = a.readLatest(ctx, js, &kv); e != nil && e.Revision() != seen {
					break
				}
			}
		case <-blessed:
			blessed, seen = nil, 0
			e = a.readLatest(ctx, js, &kv)
		case <-poll.C:
			e = a.readLatest(ctx, js, &kv)
			poll.Reset(jittered(a.cfg.PollEvery, rand.Float64()))
		}
		if e == nil || e.Revision() == seen {
			continue
		}
		seen = e.Revision()
		if !a.published(ctx, js, e.Value()) {
			seen = 0
		}
	}
}

// readLatest returns LatestKey's entry, or nil when there is none (no
// release published yet, no JetStream, or the read failed: the next poll
// tries again). *kv is bound here and dropped after an error, so a bucket
// an admin deleted and created again is found.
func (a *Agent) readLatest(ctx context.Context, js jetstream.JetStream, kv *jetstream.KeyValue) jetstream.KeyValueEntry {
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
	return e
}

// jittered spreads a period over [d/2, 3d/2) by u in [0, 1), so that
// boxes that started together (a power cut, a mesh restart) do not read
// together; the mean stays d.
func jittered(d time.Duration, u float64) time.Duration {
	return d/2 + time.Duration(u*float64(d))
}

// sleepCtx waits d, or less if ctx ends first (then its error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
