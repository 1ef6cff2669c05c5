package discovery

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/meshnode/meshnode/identity"
)

// memberlist calls these with its own locks held: they only take
// Discovery's locks, never call back into memberlist and never block on a
// channel.

// delegate is memberlist's Delegate, AliveDelegate and MergeDelegate.
type delegate Discovery

// events is memberlist's EventDelegate.
type events Discovery

// User message and push/pull state types.
const (
	msgRevocation  = 'R'
	msgLeaving     = 'L'
	stateRevocList = 'R'
)

func (g *delegate) d() *Discovery { return (*Discovery)(g) }

func (g *delegate) NodeMeta(limit int) []byte {
	d := g.d()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.localMeta) > limit {
		panic("discovery: node meta exceeds memberlist's limit") // ruled out by MaxMetaSize
	}
	return bytes.Clone(d.localMeta)
}

// NotifyMsg takes a revocation broadcast or a member's signed notice that
// it is leaving (sent to each member directly by Leave).
func (g *delegate) NotifyMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	d := g.d()
	switch b[0] {
	case msgLeaving:
		md, rej := d.checkSignatures(b[1:])
		if rej == nil && md.leaving && !d.revs.IsRevoked(md.ticket.Node) {
			d.noteLeaving(md)
		}
	case msgRevocation:
		r, err := identity.ParseRevocation(b[1:])
		if err != nil {
			d.log.Debug("gossip: malformed revocation message", "err", err)
			return
		}
		d.offerRevocations([]*identity.Revocation{r})
	case msgPhone:
		d.notifyPhoneMsg(b[1:])
	case msgKeyNotice:
		d.notifyNoticeMsg(b[1:])
	}
}

func (g *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return g.queue.GetBroadcasts(overhead, limit)
}

func (g *delegate) LocalState(join bool) []byte {
	d := g.d()
	return d.keyedState(d.localState())
}

func (g *delegate) MergeRemoteState(buf []byte, join bool) {
	d := g.d()
	d.stats.pushPulls.Add(1)
	if len(buf) > 0 && buf[0] == stateKeyed {
		inner, ok := d.splitKeyedState(buf)
		if !ok {
			return
		}
		buf = inner
	}
	if len(buf) > 0 && buf[0] == statePhones {
		d.mergePhoneState(buf)
		return
	}
	if len(buf) < 1 || buf[0] != stateRevocList {
		return
	}
	if len(buf) > maxRemoteState {
		d.rejected("push-pull", reject(RejectOversizedState, fmt.Sprintf("%d bytes of state, at most %d are read", len(buf), maxRemoteState)))
		return
	}
	list, err := identity.ParseRevocations(buf[1:])
	if err != nil {
		d.log.Debug("gossip: malformed revocation state", "err", truncate(err.Error()))
		return
	}
	if len(list) > 0 {
		g.d().offerRevocations(list)
	}
}

// offerRevocations hands at most maxRevocationsPerPush unknown
// revocations to the worker without blocking; when it is behind, the next
// push/pull carries them again.
func (d *Discovery) offerRevocations(list []*identity.Revocation) {
	var fresh []*identity.Revocation
	for _, r := range list {
		if !d.revs.IsRevoked(r.Node) {
			fresh = append(fresh, r)
		}
		if len(fresh) == maxRevocationsPerPush {
			break
		}
	}
	if len(fresh) == 0 {
		return
	}
	select {
	case d.revIn <- fresh:
	default:
	}
}

func (g *delegate) NotifyAlive(n *memberlist.Node) error {
	d := g.d()
	_, rej := d.admit(n.Name, n.Addr, n.Meta, time.Now())
	if rej != nil {
		d.rejected(n.Name, rej)
		return rej
	}
	return nil
}

var errNoneAdmitted = errors.New("no node of the remote side is admitted: another mesh?")

// NotifyMerge vets a join's or push/pull's node list. Individual nodes
// are vetted again by NotifyAlive as they merge; the merge as a whole is
// refused only when no live node on the other side is admissible, so one
// stale member never blocks a rejoin.
func (g *delegate) NotifyMerge(peers []*memberlist.Node) error {
	d := g.d()
	now := time.Now()
	live, ok := 0, 0
	for _, n := range peers {
		if n.State != memberlist.StateAlive {
			continue
		}
		live++
		if _, rej := d.admit(n.Name, n.Addr, n.Meta, now); rej != nil {
			d.rejected(n.Name, rej)
			continue
		}
		ok++
	}
	if ok == 0 {
		// Also with no live node at all: a push/pull that presents nobody
		// is nobody's, whatever it carries.
		return errNoneAdmitted
	}
	return nil
}

func (e *events) NotifyJoin(n *memberlist.Node)   { e.seen(n) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.seen(n) }

func (e *events) seen(n *memberlist.Node) {
	d := (*Discovery)(e)
	md, rej := d.admit(n.Name, n.Addr, n.Meta, time.Now())
	if rej != nil {
		return // NotifyAlive refused it already; nothing to record
	}
	d.setMember(md, StateAlive)
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	d := (*Discovery)(e)
	md, rej := d.checkSignatures(n.Meta)
	if rej != nil || d.revs.IsRevoked(md.ticket.Node) {
		return
	}
	state := StateDead
	if md.leaving {
		state = StateLeft
	}
	d.setMember(md, state)
}

// revBroadcast gossips one revocation.
type revBroadcast struct {
	node identity.NodePublic
	msg  []byte
}

func (b *revBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*revBroadcast)
	return ok && ob.node == b.node
}
func (b *revBroadcast) Message() []byte { return b.msg }
func (b *revBroadcast) Finished()       {}

func (d *Discovery) queueRevocation(r *identity.Revocation) {
	d.queue.QueueBroadcast(&revBroadcast{node: r.Node, msg: append([]byte{msgRevocation}, r.Marshal()...)})
}
