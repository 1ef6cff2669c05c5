// Package updater moves appliance updates over the mesh: the agent that
// runs on every appliance (it follows the published release, takes direct
// pushes, installs through image/update, gates the trial boot of a new slot
// on the node's health, and answers status), and the admin side of the
// same protocol (Publish, Push, Status) that `meshnode update` calls.
//
// The transport needs no trust of its own: a box installs only a manifest
// the mesh CA signed, checks every file against it before it writes
// anything, and never goes below its generation floor. What the transport
// adds is reach: JetStream (an Object Store for the files, a KV key naming
// the latest release) for a fleet, and plain NATS request/reply to one box
// for a mesh without JetStream quorum.
package updater

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshnode/meshnode/image/update"
)

// Subjects and JetStream buckets of the update protocol (version 1).
const (
	// StatusSubject is a scatter-gather request: every agent answers with
	// its NodeStatus.
	StatusSubject = "meshnode.update.v1.status"
	// pushPrefix + NAME + ".offer" | ".chunk" | ".commit": a direct push.
	pushPrefix = "meshnode.update.v1.push."
	// ReleasedSubject is the cue Publish sends after the KV put: agents
	// read the key when they hear it. The KV's own message on the key's
	// subject does not cross a leaf connection (follow.go), this one
	// does. Only admins may publish it (natsnode.ReleaseSubjects), so no
	// member can make every box read at will.
	ReleasedSubject = "meshnode.update.v1.released"
	// KVBucket holds LatestKey: the published Release.
	KVBucket  = "meshnode-update"
	LatestKey = "latest"
	// ObjectBucket holds the release files as "<generation>/<file>".
	ObjectBucket = "meshnode-release"
	// ReleaseFormat is the version of the Release JSON.
	ReleaseFormat = 1
	// ChunkSize keeps each pushed message well under NATS's 1 MiB payload.
	ChunkSize = 256 << 10
)

// Reboot policies: when a box that wrote an update restarts into it.
const (
	RebootNow    = "now"
	RebootManual = "manual"
	rebootAt     = "at " // + HH:MM, UTC
)

// ParseReboot checks a reboot policy: "now", "manual" or "at HH:MM" (UTC).
func ParseReboot(s string) (string, error) {
	switch s {
	case RebootNow, RebootManual:
		return s, nil
	}
	hm, ok := strings.CutPrefix(s, rebootAt)
	if ok {
		if _, err := time.Parse("15:04", hm); err == nil {
			return s, nil
		}
	}
	return "", fmt.Errorf("reboot policy %q: want now, manual or \"at HH:MM\" (UTC)", s)
}

// nextReboot is when a box applies an update under policy, from now; the
// zero time for manual.
func nextReboot(policy string, now time.Time) time.Time {
	switch policy {
	case RebootNow:
		return now
	case RebootManual:
		return time.Time{}
	}
	hm, _ := time.Parse("15:04", strings.TrimPrefix(policy, rebootAt))
	now = now.UTC()
	at := time.Date(now.Year(), now.Month(), now.Day(), hm.Hour(), hm.Minute(), 0, 0, time.UTC)
	if !at.After(now) {
		at = at.Add(24 * time.Hour)
	}
	return at
}

// Release is what `meshnode update publish` puts under LatestKey: the
// signed manifest and how to roll it out. The rollout fields are not
// signed: whoever may write the key (admins; members can publish into
// streams) can change who takes a release and when it reboots, never what
// a box installs.
type Release struct {
	Format   int      `json:"format"`
	Manifest []byte   `json:"manifest"`
	Reboot   string   `json:"reboot"`
	Names    []string `json:"names,omitempty"`   // only these boxes take it
	Percent  int      `json:"percent,omitempty"` // else this share of the fleet (1-99; 0 is everyone)
}

// Targets reports whether the box called name takes the release. A share
// of the fleet is chosen by a hash of the name alone, so the same boxes
// are the first every time and raising the percentage only adds boxes.
func (r *Release) Targets(name string) bool {
	if len(r.Names) > 0 {
		return slices.Contains(r.Names, name)
	}
	if r.Percent <= 0 || r.Percent >= 100 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32()%100) < r.Percent
}

func decodeRelease(b []byte) (*Release, *update.Manifest, error) {
	var r Release
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, nil, fmt.Errorf("published release: %w", err)
	}
	if r.Format != ReleaseFormat {
		return nil, nil, fmt.Errorf("published release: format %d, this build reads %d", r.Format, ReleaseFormat)
	}
	if _, err := ParseReboot(r.Reboot); err != nil {
		return nil, nil, fmt.Errorf("published release: %w", err)
	}
	m, err := update.ParseManifest(r.Manifest)
	if err != nil {
		return nil, nil, fmt.Errorf("published release: %w", err)
	}
	return &r, m, nil
}

// Phases an agent reports.
const (
	PhaseIdle        = "idle"
	PhaseRefused     = "refused"
	PhaseDownloading = "downloading"
	PhaseReceiving   = "receiving"
	PhaseVerified    = "verified"
	PhaseWritten     = "written"
	PhaseRebooting   = "rebooting"
	PhaseTrial       = "trial"
	PhaseBlessed     = "blessed"
	PhaseRollingBack = "rolling back"
	PhaseRolledBack  = "rolled back"
	PhaseInterrupted = "interrupted"
	PhaseFailed      = "failed"
	PhaseNoUpdates   = "not updatable"
)

// NodeStatus is one agent's answer to StatusSubject.
type NodeStatus struct {
	Name           string    `json:"name"`
	Slot           string    `json:"slot,omitempty"`
	Release        string    `json:"release"`
	Generation     uint64    `json:"generation"`
	Floor          uint64    `json:"floor"`
	Phase          string    `json:"phase"`
	Target         uint64    `json:"target_generation,omitempty"` // what the phase is about
	TargetRelease  string    `json:"target_release,omitempty"`
	Percent        int       `json:"percent,omitempty"` // download or receive progress
	Message        string    `json:"message,omitempty"` // why: a refusal, a rollback, the health check
	RebootAt       time.Time `json:"reboot_at,omitzero"`
	Since          time.Time `json:"since"`
	LastResult     string    `json:"last_result,omitempty"` // the last update's outcome on this box
	LastResultTime time.Time `json:"last_result_at,omitzero"`
}

// Status asks every agent for its NodeStatus and collects answers until
// want answers arrived (0: no early stop) or wait passed.
func Status(ctx context.Context, nc *nats.Conn, want int, wait time.Duration) ([]NodeStatus, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(StatusSubject, inbox, nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	seen := map[string]NodeStatus{}
	for want <= 0 || len(seen) < want {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break // the window ended
		}
		var s NodeStatus
		if json.Unmarshal(m.Data, &s) == nil && s.Name != "" {
			seen[s.Name] = s
		}
	}
	out := make([]NodeStatus, 0, len(seen))
	for _, s := range seen {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b NodeStatus) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Progress is told how many of total bytes moved so far.
type Progress func(done, total uint64)

// Publish stores the bundle's files in the Object Store (created with
// replicas if missing), then points LatestKey at the release. Agents
// following the key download it. The files go first: an agent that sees
// the key finds them.
func Publish(ctx context.Context, nc *nats.Conn, b *update.Bundle, rel Release, replicas int, progress Progress) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: ObjectBucket, Description: "meshnode appliance release files (meshnode update publish)",
		Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return fmt.Errorf("object store %s: %w", ObjectBucket, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: KVBucket, Description: "the meshnode release appliances install (meshnode update publish)",
		Storage: jetstream.FileStorage, Replicas: replicas, History: 8,
	})
	if err != nil {
		return fmt.Errorf("key-value bucket %s: %w", KVBucket, err)
	}
	m := b.Manifest
	var done uint64
	for _, f := range m.Files {
		r := &countingReader{r: bytes.NewReader(b.Files[f.Name]), f: func(n int) {
			done += uint64(n)
			if progress != nil {
				progress(done, m.TotalSize())
			}
		}}
		if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: objectName(m.Generation, f.Name)}, r); err != nil {
			return fmt.Errorf("object store %s: %s: %w", ObjectBucket, objectName(m.Generation, f.Name), err)
		}
	}
	rel.Format, rel.Manifest = ReleaseFormat, m.Marshal()
	data, err := json.Marshal(rel)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, LatestKey, data); err != nil {
		return fmt.Errorf("key-value bucket %s: %s: %w", KVBucket, LatestKey, err)
	}
	// The release is out; a lost cue only means boxes find it at their
	// next read (every minute).
	if err := nc.Publish(ReleasedSubject, nil); err == nil {
		_ = nc.FlushWithContext(ctx)
	}
	prune(ctx, obs, m.Generation)
	return nil
}

// prune deletes the files of generations older than the one published
// before keep: boxes that are still downloading it finish.
func prune(ctx context.Context, obs jetstream.ObjectStore, keep uint64) {
	list, err := obs.List(ctx)
	if err != nil {
		return
	}
	var gens []uint64
	for _, o := range list {
		g, _, _ := strings.Cut(o.Name, "/")
		if n, err := strconv.ParseUint(g, 10, 64); err == nil && n < keep && !slices.Contains(gens, n) {
			gens = append(gens, n)
		}
	}
	slices.Sort(gens)
	if len(gens) <= 1 {
		return
	}
	for _, o := range list {
		g, _, _ := strings.Cut(o.Name, "/")
		if n, err := strconv.ParseUint(g, 10, 64); err == nil && n < gens[len(gens)-1] {
			_ = obs.Delete(ctx, o.Name)
		}
	}
}

func objectName(gen uint64, file string) string { return strconv.FormatUint(gen, 10) + "/" + file }

type countingReader struct {
	r io.Reader
	f func(int)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.f(n)
	return n, err
}

// Headers of a push.
const (
	hdrSession = "Meshnode-Update-Session"
	hdrFile    = "Meshnode-Update-File"
	hdrOffset  = "Meshnode-Update-Offset"
	hdrReboot  = "Meshnode-Update-Reboot"
)

// pushReply is every answer of a push step.
type pushReply struct {
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	Session  string    `json:"session,omitempty"`
	Entry    string    `json:"entry,omitempty"`
	RebootAt time.Time `json:"reboot_at,omitzero"`
}

// ErrRefused wraps a box's refusal of a push.
var ErrRefused = errors.New("refused")

// PushResult is what a box said when it took a pushed update.
type PushResult struct {
	Entry    string    // the slot's new loader entry
	RebootAt time.Time // zero: the operator reboots it
}

// Push sends the bundle to the box called to over NATS request/reply: the
// manifest first (the box refuses it at once if it would not install it),
// then the files in chunks, then a commit, at which the box checks every
// file and writes the inactive slot.
func Push(ctx context.Context, nc *nats.Conn, to string, b *update.Bundle, reboot string, progress Progress) (*PushResult, error) {
	subj := pushPrefix + to
	ask := func(suffix string, hdr nats.Header, data []byte, timeout time.Duration) (*pushReply, error) {
		msg := &nats.Msg{Subject: subj + suffix, Header: hdr, Data: data}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err := nc.RequestMsgWithContext(rctx, msg)
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("push to %s: no update agent answers on %s (is %s an appliance, and up?)", to, subj+suffix, to)
		}
		if err != nil {
			return nil, fmt.Errorf("push to %s%s: %w", to, suffix, err)
		}
		var r pushReply
		if err := json.Unmarshal(resp.Data, &r); err != nil {
			return nil, fmt.Errorf("push to %s%s: bad answer: %w", to, suffix, err)
		}
		if !r.OK {
			return nil, fmt.Errorf("%s %w it: %s", to, ErrRefused, r.Error)
		}
		return &r, nil
	}
	m := b.Manifest
	offer, err := ask(".offer", nats.Header{hdrReboot: []string{reboot}}, m.Marshal(), 15*time.Second)
	if err != nil {
		return nil, err
	}
	var done uint64
	for _, f := range m.Files {
		data := b.Files[f.Name]
		for off := 0; off < len(data); off += ChunkSize {
			end := min(off+ChunkSize, len(data))
			h := nats.Header{hdrSession: []string{offer.Session}, hdrFile: []string{f.Name}, hdrOffset: []string{strconv.Itoa(off)}}
			if _, err := ask(".chunk", h, data[off:end], 30*time.Second); err != nil {
				return nil, err
			}
			done += uint64(end - off)
			if progress != nil {
				progress(done, m.TotalSize())
			}
		}
	}
	// Writing ~50 MB to a FAT ESP on a slow box takes a while.
	r, err := ask(".commit", nats.Header{hdrSession: []string{offer.Session}}, nil, 3*time.Minute)
	if err != nil {
		return nil, err
	}
	return &PushResult{Entry: r.Entry, RebootAt: r.RebootAt}, nil
}
