package discovery

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
	"golang.org/x/crypto/cryptobyte"

	"github.com/meshnode/meshnode/identity"
)

// Phone tickets travel like revocations: a broadcast when one is issued,
// and in every push/pull, so a member that was away catches up; each
// member verifies them against the CA and persists them. They do not ride
// in node meta (512 bytes), and a phone, which cannot gossip, needs no
// member to vouch for it: the CA signature is the whole proof.

const (
	msgPhone = 'P'
	// statePhones is a push/pull state with revocations and phone
	// tickets: 'S' | u32 len | revocation list | phone list. A state with
	// no phones is sent in the older 'R' form, which every member reads.
	statePhones = 'S'

	// maxPhonesPerPush bounds the tickets one message hands the worker
	// (each costs a signature check).
	maxPhonesPerPush = 1024
	// maxPhoneState bounds the phone part of a push/pull that is parsed
	// at all: 1,024 typical tickets (≈ 300 bytes) with room to spare.
	maxPhoneState = 1 << 20
)

// Phones returns the phone tickets this node knows (not revoked, not
// expired at the last sweep), sorted by name.
func (d *Discovery) Phones() []*identity.PhoneTicket { return d.phones.List() }

// PhoneSet is the shared set, for readers that ask per packet or per
// connection (NATS admission).
func (d *Discovery) PhoneSet() *identity.PhoneSet { return d.phones }

// AddPhone adds a CA-signed phone ticket: it is verified, persisted and
// gossiped to every member, and the member table's change notification
// fires so that hubs add the phone as a WireGuard peer.
func (d *Discovery) AddPhone(t *identity.PhoneTicket) error {
	if _, err := d.phones.Add(t, time.Now()); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	if _, ok := d.phones.Get(t.Node); !ok {
		return fmt.Errorf("discovery: phone %q is revoked", t.Name)
	}
	d.queuePhone(t)
	d.notify()
	return d.savePhones()
}

// forgetPhone is called when node is revoked: it reports whether node was
// a phone, so that the change reaches the reconcile loop (the hub drops
// the peer, NATS closes its connections).
func (d *Discovery) forgetPhone(node identity.NodePublic) bool {
	t, ok := d.phones.Get(node)
	if ok || d.phones.Prune(time.Now()) {
		if ok {
			d.log.Warn("phone revoked", "name", t.Name, "addr", t.Addr)
		}
		if err := d.savePhones(); err != nil {
			d.log.Error("phone tickets not saved", "err", err)
		}
		return true
	}
	return false
}

func (d *Discovery) savePhones() error {
	if d.cfg.PhonesPath == "" {
		return nil
	}
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	return d.phones.Save(d.cfg.PhonesPath)
}

// loadPhones sets up the phone set from Config.
func (d *Discovery) loadPhones(now time.Time) error {
	if d.cfg.Phones != nil {
		d.phones = d.cfg.Phones
		return nil
	}
	d.phones = identity.NewPhoneSet(d.trust, d.revs)
	if d.cfg.PhonesPath == "" {
		return nil
	}
	s, err := identity.LoadPhones(d.cfg.PhonesPath, d.trust, d.revs, now)
	if err != nil {
		return err
	}
	d.phones = s
	return nil
}

// mergePhones applies tickets learnt from gossip (on the worker) and
// passes the new ones on.
func (d *Discovery) mergePhones(list []*identity.PhoneTicket) {
	added, err := d.phones.Merge(list, time.Now())
	if err != nil && d.refusalLog.Allow() {
		d.log.Warn("gossip: invalid phone ticket ignored", "err", truncate(err.Error()))
	}
	if len(added) == 0 {
		return
	}
	for _, t := range added {
		d.queuePhone(t)
		d.log.Info("phone learnt", "name", t.Name, "addr", t.Addr)
	}
	d.notify()
	if err := d.savePhones(); err != nil {
		d.log.Error("phone tickets not saved", "err", err)
	}
}

// offerPhones hands at most maxPhonesPerPush tickets the set does not
// hold to the worker without blocking (memberlist's locks are held).
func (d *Discovery) offerPhones(list []*identity.PhoneTicket) {
	var fresh []*identity.PhoneTicket
	for _, t := range list {
		if have, ok := d.phones.Get(t.Node); ok && have.Equal(t) {
			continue
		}
		if d.revs.IsRevoked(t.Node) {
			continue
		}
		fresh = append(fresh, t)
		if len(fresh) == maxPhonesPerPush {
			break
		}
	}
	if len(fresh) == 0 {
		return
	}
	select {
	case d.phoneIn <- fresh:
	default:
	}
}

// localState is the push/pull state: revocations, and phones when there
// are any.
func (d *Discovery) localState() []byte {
	revs := identity.MarshalRevocations(d.revs.List())
	phones := d.phones.List()
	if len(phones) == 0 {
		return append([]byte{stateRevocList}, revs...)
	}
	b := []byte{statePhones}
	b = binary.BigEndian.AppendUint32(b, uint32(len(revs)))
	b = append(b, revs...)
	return append(b, identity.MarshalPhoneTickets(phones)...)
}

// mergePhoneState takes a statePhones push/pull apart and hands both
// parts on; a malformed state is dropped whole.
func (d *Discovery) mergePhoneState(buf []byte) {
	s := cryptobyte.String(buf[1:])
	var (
		n    uint32
		revs []byte
	)
	if !s.ReadUint32(&n) || n > uint32(len(s)) || !s.ReadBytes(&revs, int(n)) {
		d.log.Debug("gossip: malformed phone state")
		return
	}
	if len(revs) > maxRemoteState || len(s) > maxPhoneState {
		d.rejected("push-pull", reject(RejectOversizedState, fmt.Sprintf("%d bytes of revocations and %d of phones", len(revs), len(s))))
		return
	}
	rl, err1 := identity.ParseRevocations(revs)
	pl, err2 := identity.ParsePhoneTickets(s)
	if err := errors.Join(err1, err2); err != nil {
		d.log.Debug("gossip: malformed phone state", "err", truncate(err.Error()))
		return
	}
	if len(rl) > 0 {
		d.offerRevocations(rl)
	}
	if len(pl) > 0 {
		d.offerPhones(pl)
	}
}

// phoneBroadcast gossips one phone ticket; a newer ticket for the same
// phone replaces it in the queue.
type phoneBroadcast struct {
	node identity.NodePublic
	msg  []byte
}

func (b *phoneBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*phoneBroadcast)
	return ok && ob.node == b.node
}
func (b *phoneBroadcast) Message() []byte { return b.msg }
func (b *phoneBroadcast) Finished()       {}

func (d *Discovery) queuePhone(t *identity.PhoneTicket) {
	d.queue.QueueBroadcast(&phoneBroadcast{node: t.Node, msg: append([]byte{msgPhone}, t.Marshal()...)})
}

// notifyPhoneMsg takes a phone ticket broadcast.
func (d *Discovery) notifyPhoneMsg(b []byte) {
	t, err := identity.ParsePhoneTicket(b)
	if err != nil {
		d.log.Debug("gossip: malformed phone ticket message", "err", err)
		return
	}
	d.offerPhones([]*identity.PhoneTicket{t})
}
