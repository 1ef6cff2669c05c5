package discovery

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"golang.org/x/crypto/cryptobyte"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// Gossip key rotation. Gossip is sealed with the gossip key of the newest
// epoch whose use-at has passed and opened with every key not yet retired
// (identity.GossipKeyring.Schedule); keyLoop keeps memberlist's keyring
// on that schedule. A rotation is announced by a CA-signed notice that
// travels like a revocation (a broadcast, and in every push/pull once the
// mesh has rotated), never with the key: a member that learns a notice it
// has no key for marks it pending and signals GossipKeyNeeded, and the
// node fetches the key from a member's enrollment endpoint
// (discovery/enroll), which hands it over TLS to a proven, unrevoked
// identity only.

const (
	msgKeyNotice = 'K'
	// stateKeyed is a push/pull state of a mesh that rotated its gossip
	// key: 'K' | u16 len | notice | the 'R' or 'S' state. A mesh that
	// never rotated sends the older forms.
	stateKeyed = 'K'
	// maxNoticesPending bounds the notices handed to keyLoop unverified.
	maxNoticesPending = 16
)

// gossipKeys is the keyring state; keyMu guards it.
type gossipKeys struct {
	keyMu   sync.Mutex
	ring    *identity.GossipKeyring
	pending *identity.GossipKeyNotice // a newer epoch whose key we lack
	kr      *memberlist.Keyring       // memberlist's (Config.Keyring), set by Start
	applied [][identity.GossipKeySize]byte

	keyNeed chan struct{}                  // pending was set (mesh fetches)
	keyIn   chan *identity.GossipKeyNotice // notices from gossip, unverified
	keyTick chan struct{}                  // apply the schedule now
}

func (d *Discovery) initGossipKeys() error {
	ring := identity.NewGossipKeyring(d.cfg.Member)
	if d.cfg.GossipKeysPath != "" {
		r, err := identity.LoadGossipKeyring(d.cfg.GossipKeysPath, d.cfg.Member)
		if err != nil {
			return err
		}
		ring = r
	}
	d.keys.ring = ring
	d.keys.keyNeed = make(chan struct{}, 1)
	d.keys.keyIn = make(chan *identity.GossipKeyNotice, maxNoticesPending)
	d.keys.keyTick = make(chan struct{}, 1)
	return nil
}

// memberlistKeyring is the keyring memberlist starts with.
func (d *Discovery) memberlistKeyring() *memberlist.Keyring {
	d.keys.keyMu.Lock()
	defer d.keys.keyMu.Unlock()
	s := d.keys.ring.Schedule(time.Now())
	keys := make([][]byte, len(s.Installed))
	for i := range s.Installed {
		keys[i] = s.Installed[i][:]
	}
	kr, err := memberlist.NewKeyring(keys, s.Primary[:])
	if err != nil {
		panic("discovery: gossip keyring: " + err.Error()) // 32-byte keys only
	}
	d.keys.kr, d.keys.applied = kr, s.Installed
	return kr
}

// GossipKeyStatus is what this node's gossip keyring holds.
type GossipKeyStatus struct {
	// Epoch is the newest epoch held; Primary the epoch that seals.
	Epoch, Primary uint32
	// Installed are the epochs that open gossip, the primary first.
	Installed []uint32
	// Pending is a newer epoch announced whose key is not fetched yet (0: none).
	Pending uint32
}

// GossipKeys reports the gossip keyring.
func (d *Discovery) GossipKeys() GossipKeyStatus {
	d.keys.keyMu.Lock()
	defer d.keys.keyMu.Unlock()
	s := d.keys.ring.Schedule(time.Now())
	st := GossipKeyStatus{Epoch: d.keys.ring.Epoch(), Primary: s.PrimaryEpoch, Installed: s.Epochs}
	if d.keys.pending != nil {
		st.Pending = d.keys.pending.Epoch
	}
	return st
}

// GossipKeyNeeded signals that a gossip key notice arrived whose key this
// node lacks: call PendingGossipKey and fetch it (at most one pending
// signal).
func (d *Discovery) GossipKeyNeeded() <-chan struct{} { return d.keys.keyNeed }

// PendingGossipKey is the newest announced epoch whose key is not held.
func (d *Discovery) PendingGossipKey() (*identity.GossipKeyNotice, bool) {
	d.keys.keyMu.Lock()
	defer d.keys.keyMu.Unlock()
	return d.keys.pending, d.keys.pending != nil
}

// CurrentGossipKey is the newest rotated key held and its notice, which
// the enrollment endpoint hands to members that prove themselves (false:
// the mesh never rotated, and every member derives epoch 0).
func (d *Discovery) CurrentGossipKey() (identity.GossipKeyEntry, bool) {
	d.keys.keyMu.Lock()
	defer d.keys.keyMu.Unlock()
	return d.keys.ring.Newest()
}

// InstallGossipKey adds a fetched key: the notice must be CA-signed, newer
// than the newest held, and name key. It is persisted, announced to the
// mesh, and put on memberlist's keyring at once (sealing with it waits for
// its use-at). identity.ErrGossipKeyOld means nothing new.
func (d *Discovery) InstallGossipKey(n *identity.GossipKeyNotice, key [identity.GossipKeySize]byte) error {
	d.keys.keyMu.Lock()
	if err := d.keys.ring.Add(n, key); err != nil {
		d.keys.keyMu.Unlock()
		return fmt.Errorf("discovery: %w", err)
	}
	if p := d.keys.pending; p != nil && d.keys.ring.Check(p) != nil {
		d.keys.pending = nil
	}
	err := d.saveGossipKeysLocked()
	d.keys.keyMu.Unlock()
	d.queueNotice(n)
	d.log.Info("gossip key installed", "epoch", n.Epoch, "use_at", n.UseAt, "retire_older_at", n.RetireAt)
	d.kickKeys()
	if err != nil {
		return fmt.Errorf("discovery: gossip key installed but not saved: %w", err)
	}
	return nil
}

// RotateGossipKey makes the next epoch with a random key (the CA holder,
// after a revocation): signed with ca, installed here and announced. Its
// use-at and retire-at are the configured delays from now.
func (d *Discovery) RotateGossipKey(ca *identity.CA, now time.Time) (*identity.GossipKeyNotice, error) {
	key, err := identity.NewGossipKey()
	if err != nil {
		return nil, err
	}
	d.keys.keyMu.Lock()
	epoch := d.keys.ring.Epoch() + 1
	if p := d.keys.pending; p != nil && p.Epoch >= epoch {
		epoch = p.Epoch + 1
	}
	d.keys.keyMu.Unlock()
	useAfter, retireAfter := d.cfg.GossipKeyUseAfter, d.cfg.GossipKeyRetireAfter
	// Rounded up: notices carry whole seconds, and truncating would cut
	// the delay members get to fetch the key.
	n, err := ca.SignGossipKeyNotice(epoch, key, now.Add(useAfter+time.Second-1), now.Add(retireAfter+time.Second-1))
	if err != nil {
		return nil, err
	}
	if err := d.InstallGossipKey(n, key); err != nil {
		return nil, err
	}
	return n, nil
}

func (d *Discovery) saveGossipKeysLocked() error {
	if d.cfg.GossipKeysPath == "" {
		return nil
	}
	return d.keys.ring.Save(d.cfg.GossipKeysPath)
}

func (d *Discovery) kickKeys() {
	select {
	case d.keys.keyTick <- struct{}{}:
	default:
	}
}

// offerNotice hands a notice from gossip to keyLoop without blocking
// (memberlist's locks are held); one already known costs a comparison.
func (d *Discovery) offerNotice(n *identity.GossipKeyNotice) {
	d.keys.keyMu.Lock()
	known := d.keys.pending != nil && d.keys.pending.Equal(n)
	if e, ok := d.keys.ring.Newest(); ok && (e.Notice.Equal(n) || e.Notice.Epoch > n.Epoch) {
		known = true
	}
	d.keys.keyMu.Unlock()
	if known {
		return
	}
	select {
	case d.keys.keyIn <- n:
	default:
	}
}

// takeNotice verifies a notice from gossip and, when it announces an
// epoch newer than held and pending, makes it pending and passes it on.
func (d *Discovery) takeNotice(n *identity.GossipKeyNotice) {
	d.keys.keyMu.Lock()
	err := d.keys.ring.Check(n)
	if err == nil && d.keys.pending != nil {
		p := d.keys.pending
		if p.Equal(n) || p.Epoch > n.Epoch || (p.Epoch == n.Epoch && bytes.Compare(p.Marshal(), n.Marshal()) < 0) {
			err = identity.ErrGossipKeyOld
		}
	}
	if err == nil {
		d.keys.pending = n
	}
	d.keys.keyMu.Unlock()
	if err != nil {
		if !errors.Is(err, identity.ErrGossipKeyOld) && d.refusalLog.Allow() {
			d.log.Warn("gossip: gossip key notice refused", "err", truncate(err.Error()))
		}
		return
	}
	d.log.Info("gossip key rotated by the mesh: fetching the new key", "epoch", n.Epoch, "use_at", n.UseAt)
	d.queueNotice(n)
	select {
	case d.keys.keyNeed <- struct{}{}:
	default:
	}
}

// keyLoop applies the key schedule (every tick, and at once when a key is
// added) and takes the notices gossip delivered.
func (d *Discovery) keyLoop(ctx context.Context) {
	defer d.wg.Done()
	every := time.Second
	if d.cfg.Fast {
		every = 50 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-d.keys.keyIn:
			d.takeNotice(n)
		case <-d.keys.keyTick:
		case <-tick.C:
		}
		d.applyKeys(time.Now())
	}
}

// applyKeys puts memberlist's keyring on the schedule: new keys in, the
// primary switched, retired keys out (in that order: memberlist refuses
// to remove its primary). Retired rotated keys are forgotten on disk too.
func (d *Discovery) applyKeys(now time.Time) {
	d.keys.keyMu.Lock()
	defer d.keys.keyMu.Unlock()
	kr := d.keys.kr
	if kr == nil {
		return // not started
	}
	if d.keys.ring.Prune(now) {
		if err := d.saveGossipKeysLocked(); err != nil {
			d.log.Error("gossip keyring not saved", "err", err)
		}
	}
	s := d.keys.ring.Schedule(now)
	if slices.Equal(s.Installed, d.keys.applied) {
		return
	}
	for _, k := range s.Installed {
		if err := kr.AddKey(k[:]); err != nil {
			d.log.Error("gossip keyring", "err", err)
			return
		}
	}
	if !bytes.Equal(kr.GetPrimaryKey(), s.Primary[:]) {
		if err := kr.UseKey(s.Primary[:]); err != nil {
			d.log.Error("gossip keyring", "err", err)
			return
		}
		d.log.Info("gossip now sealed with the new key", "epoch", s.PrimaryEpoch)
	}
	for _, k := range kr.GetKeys() {
		if !slices.ContainsFunc(s.Installed, func(i [identity.GossipKeySize]byte) bool { return bytes.Equal(i[:], k) }) {
			if err := kr.RemoveKey(k); err != nil {
				d.log.Error("gossip keyring", "err", err)
				return
			}
			d.log.Info("retired gossip key removed", "installed_epochs", s.Epochs)
		}
	}
	d.keys.applied = s.Installed
}

// noticeBroadcast gossips the newest notice; a newer one replaces it.
type noticeBroadcast struct{ msg []byte }

func (b *noticeBroadcast) Invalidates(o memberlist.Broadcast) bool {
	_, ok := o.(*noticeBroadcast)
	return ok
}
func (b *noticeBroadcast) Message() []byte { return b.msg }
func (b *noticeBroadcast) Finished()       {}

func (d *Discovery) queueNotice(n *identity.GossipKeyNotice) {
	d.queue.QueueBroadcast(&noticeBroadcast{msg: append([]byte{msgKeyNotice}, n.Marshal()...)})
}

// notifyNoticeMsg takes a notice broadcast.
func (d *Discovery) notifyNoticeMsg(b []byte) {
	n, err := identity.ParseGossipKeyNotice(b)
	if err != nil {
		d.log.Debug("gossip: malformed gossip key notice", "err", err)
		return
	}
	d.offerNotice(n)
}

// keyedState prefixes a push/pull state with the newest notice, once the
// mesh has rotated.
func (d *Discovery) keyedState(inner []byte) []byte {
	e, ok := d.CurrentGossipKey()
	if !ok {
		return inner
	}
	nb := e.Notice.Marshal()
	b := []byte{stateKeyed}
	b = binary.BigEndian.AppendUint16(b, uint16(len(nb)))
	b = append(b, nb...)
	return append(b, inner...)
}

// splitKeyedState takes the notice off a stateKeyed push/pull and returns
// the state inside; a malformed notice drops the whole state.
func (d *Discovery) splitKeyedState(buf []byte) ([]byte, bool) {
	s := cryptobyte.String(buf[1:])
	var nb cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&nb) || len(nb) > identity.MaxGossipKeyNoticeSize {
		d.log.Debug("gossip: malformed keyed state")
		return nil, false
	}
	n, err := identity.ParseGossipKeyNotice(nb)
	if err != nil {
		d.log.Debug("gossip: malformed keyed state", "err", err)
		return nil, false
	}
	d.offerNotice(n)
	return s, true
}

// gossipKeyDelays are Config's rotation delays with their defaults.
func gossipKeyDelays(fast bool, use, retire time.Duration) (time.Duration, time.Duration) {
	if use <= 0 {
		use = defaults.GossipKeyUseAfter
		if fast {
			use = 2 * time.Second
		}
	}
	if retire <= 0 {
		retire = defaults.GossipKeyRetireAfter
		if fast {
			retire = 5 * time.Second
		}
	}
	return use, max(use, retire)
}
