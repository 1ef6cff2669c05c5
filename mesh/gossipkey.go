package mesh

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/discovery/enroll"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// Gossip key rotation, the node's part (discovery keeps the keyring on
// its schedule and carries the notices):
//
//   - an admin rotates right after it revoked a member (Revoke), and at
//     start when it finds a revocation it issued after its newest
//     rotation (RevokeOffline writes one with no daemon to rotate);
//   - every node fetches the key of a newer epoch as soon as gossip
//     brings its notice, at start, and whenever it has seen no other
//     member alive for GossipKeyLonelyAfter while it knows some (it may
//     have been off across a rotation: then nobody can read its gossip,
//     and it cannot read theirs, so gossip alone can never tell it);
//   - the key is asked of members' enrollment endpoints, admins first
//     (enroll.FetchGossipKey: identity proven over a challenge, key
//     checked against the CA-signed notice);
//   - a refusal that carries this node's own CA-signed revocation
//     (fetch or renewal) is taken like the one gossip brings: the node
//     stops, saying who revoked it, when and why.

// keyFetch is the fetch loop's memory; mu guards it.
type keyFetch struct {
	mu      sync.Mutex
	missing backoff // fetches because a known member is not alive
	pending backoff // retries of an announced epoch not fetched yet
}

// backoff spaces out repeated fetches for one reason: wait doubles up to
// a ceiling while the reason stays, and starts over when it goes.
type backoff struct {
	last time.Time
	gap  time.Duration // before the next fetch (0: at once)
}

// due reports whether a fetch for a reason that holds (cond) may go now,
// and if so counts it: the first at once, the next base later, then
// doubling gaps up to ceiling.
func (b *backoff) due(cond bool, now time.Time, base, ceiling time.Duration) bool {
	if !cond {
		b.gap = 0
		return false
	}
	if b.gap != 0 && now.Sub(b.last) < b.gap {
		return false
	}
	b.last = now
	b.gap = min(max(2*b.gap, base), ceiling)
	return true
}

// gossipKeyLoop fetches gossip keys until ctx ends. A degraded node
// (expired ticket) does not ask: every endpoint would refuse its ticket,
// and the refusals would count against its renewal.
func (n *Node) gossipKeyLoop(ctx context.Context) {
	every, after := defaults.ReconcileInterval, defaults.GossipKeyLonelyAfter
	if n.cfg.FastTimers {
		every, after = 500*time.Millisecond, 3*time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	if n.degraded(time.Now()) == "" {
		n.fetchGossipKey(ctx, "start")
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.disc.GossipKeyNeeded():
			if n.degraded(time.Now()) == "" {
				n.fetchGossipKey(ctx, "new epoch announced")
			}
		case <-tick.C:
			now := time.Now()
			if n.degraded(now) != "" {
				continue
			}
			_, pending := n.disc.PendingGossipKey()
			n.keys.mu.Lock()
			retry := n.keys.pending.due(pending, now, every, time.Minute)
			missing := !pending && n.keys.missing.due(n.memberMissing(now, after), now, after, 5*time.Minute)
			n.keys.mu.Unlock()
			switch {
			case retry:
				n.fetchGossipKey(ctx, "new epoch still missing")
			case missing:
				n.fetchGossipKey(ctx, "a known member is not alive")
			}
		}
	}
}

// memberMissing reports whether a known member (not one that left) has
// not been alive for at least after. Such a member may be on a gossip key
// this node lacks: when this node was off across a rotation, nobody can
// read its gossip and it cannot read theirs, so gossip alone can never
// tell it; when an admin rotated while this node was unreachable, the
// admin's notices are sealed with the new key by the time it is back.
func (n *Node) memberMissing(now time.Time, after time.Duration) bool {
	for _, m := range n.disc.Members() {
		if !m.Self && m.State != discovery.StateAlive && m.State != discovery.StateLeft && now.Sub(m.LastChange) >= after {
			return true
		}
	}
	return false
}

// fetchGossipKey asks members' enrollment endpoints for the current gossip
// key until one answers and no announced epoch is missing any more.
func (n *Node) fetchGossipKey(ctx context.Context, why string) {
	m := n.current()
	targets := n.enrollTargets(false)
	answered := false
	for _, peer := range targets {
		if _, pending := n.disc.PendingGossipKey(); answered && !pending {
			return
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		k, err := enroll.FetchGossipKey(fctx, peer, m)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if r, ok := enroll.Revoked(err, m); ok {
			n.takeOwnRevocation(r, peer)
			return
		}
		if err != nil {
			n.log.Debug("gossip key: no answer", "peer", peer, "why", why, "err", err)
			continue
		}
		answered = true
		if k.Notice == nil {
			continue
		}
		switch err := n.disc.InstallGossipKey(k.Notice, k.Key); {
		case err == nil:
			n.log.Info("gossip key fetched", "epoch", k.Notice.Epoch, "from", peer, "why", why)
		case errors.Is(err, identity.ErrGossipKeyOld):
		default:
			n.log.Warn("gossip key refused", "from", peer, "err", err)
		}
	}
	if _, pending := n.disc.PendingGossipKey(); pending && len(targets) > 0 {
		n.log.Warn("gossip key of the new epoch not fetched yet; retrying", "asked", len(targets), "why", why)
	}
}

// takeOwnRevocation records this node's revocation from an enrollment
// endpoint's refusal (verified by enroll.Revoked): the run loop then stops
// the node with the record's summary, as when gossip brings it.
func (n *Node) takeOwnRevocation(r *identity.Revocation, peer string) {
	if _, err := n.revs.Add(r); err != nil {
		return
	}
	n.log.Error("an enrollment endpoint refuses this node as revoked", "peer", peer, "by", r.Issuer, "at", r.Time, "reason", r.Reason)
	if n.disc != nil {
		// Persists the record, and the self entry's eviction wakes Run.
		if err := n.disc.Revoke(r); err != nil {
			n.log.Warn("own revocation not saved", "err", err)
		}
	}
}

// rotateGossipKey makes a new gossip key epoch (admins, after a
// revocation): the revoked box's copy of the current key stops opening
// gossip at the new epoch's retire-at.
func (n *Node) rotateGossipKey(why string) {
	if n.member.CA == nil || n.disc == nil {
		return
	}
	notice, err := n.disc.RotateGossipKey(n.member.CA, time.Now())
	if err != nil {
		n.log.Error("gossip key not rotated", "why", why, "err", err)
		return
	}
	n.log.Warn("gossip key rotated", "why", why, "epoch", notice.Epoch, "use_at", notice.UseAt, "retire_older_at", notice.RetireAt)
}

// rotationDue reports whether this admin issued a revocation after its
// newest rotation (at epoch 0: any), which no rotation followed yet.
func rotationDue(self string, revs []*identity.Revocation, newest *identity.GossipKeyNotice) bool {
	for _, r := range revs {
		if r.Issuer != self {
			continue
		}
		if newest == nil || r.Time.After(newest.UseAt) {
			return true
		}
	}
	return false
}

// rotateIfDue is rotateGossipKey at start, when rotationDue.
func (n *Node) rotateIfDue() {
	if n.member.CA == nil {
		return
	}
	var newest *identity.GossipKeyNotice
	if e, ok := n.disc.CurrentGossipKey(); ok {
		newest = e.Notice
	}
	if rotationDue(n.Name(), n.revs.List(), newest) {
		n.rotateGossipKey("a revocation this node issued is newer than the gossip key")
	}
}

// gossipKeyStatus is the keyring as status shows it.
func (n *Node) gossipKeyStatus() api.GossipKeyStatus {
	if n.disc == nil {
		return api.GossipKeyStatus{}
	}
	s := n.disc.GossipKeys()
	return api.GossipKeyStatus{Epoch: s.Epoch, Primary: s.Primary, Installed: s.Installed, Pending: s.Pending}
}
