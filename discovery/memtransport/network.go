package memtransport

import (
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config is a Network's starting knobs; Set* change them while it runs.
type Config struct {
	// Latency is the one-way delay of every packet and stream write;
	// Jitter spreads it uniformly over Latency ± Jitter (never below 0).
	Latency, Jitter time.Duration
	// Loss is the probability that a packet is lost (0 to 1). Streams
	// are reliable, as TCP is.
	Loss float64
	// Seed seeds loss and jitter.
	Seed uint64
	// InboxDepth is how many packets may wait for a member's memberlist
	// before more are dropped (a socket's receive buffer); default 512.
	InboxDepth int
}

// DefaultInboxDepth is Config.InboxDepth's default: about what a Linux
// UDP receive buffer of 208 KiB holds of gossip-sized datagrams.
const DefaultInboxDepth = 512

// Network connects the transports it made. Its methods are safe for
// concurrent use.
type Network struct {
	inboxDepth int

	// mu guards the knobs, the members and the reachability state.
	mu      sync.RWMutex
	latency time.Duration
	jitter  time.Duration
	loss    float64
	members map[netip.AddrPort]*Transport
	killed  map[netip.Addr]bool
	cuts    map[int]map[netip.Addr]bool // partitions, by id
	nextCut int

	// rngMu guards rng: loss and jitter draws.
	rngMu sync.Mutex
	rng   *rand.Rand
}

// New makes an empty network.
func New(cfg Config) *Network {
	if cfg.InboxDepth <= 0 {
		cfg.InboxDepth = DefaultInboxDepth
	}
	return &Network{
		inboxDepth: cfg.InboxDepth,
		latency:    cfg.Latency,
		jitter:     cfg.Jitter,
		loss:       cfg.Loss,
		members:    map[netip.AddrPort]*Transport{},
		killed:     map[netip.Addr]bool{},
		cuts:       map[int]map[netip.Addr]bool{},
		rng:        rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x6d656d6e6574)),
	}
}

// ErrAddrInUse is returned by NewTransport for an address already bound.
var ErrAddrInUse = errors.New("memtransport: address already in use")

// NewTransport binds a member's transport on bind. Its signature is
// discovery.TransportFactory's; the logger is unused (the network logs
// nothing).
func (n *Network) NewTransport(bind netip.AddrPort, _ *log.Logger) (memberlist.NodeAwareTransport, error) {
	return n.Bind(bind)
}

// Bind is NewTransport returning the concrete type.
func (n *Network) Bind(bind netip.AddrPort) (*Transport, error) {
	bind = netip.AddrPortFrom(bind.Addr().Unmap(), bind.Port())
	if !bind.Addr().IsValid() || bind.Port() == 0 {
		return nil, fmt.Errorf("memtransport: bind %s: need an address and a port", bind)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.members[bind] != nil {
		return nil, fmt.Errorf("memtransport: bind %s: %w", bind, ErrAddrInUse)
	}
	t := newTransport(n, bind)
	n.members[bind] = t
	return t, nil
}

// SetLatency changes the one-way latency and jitter of what is sent from
// now on.
func (n *Network) SetLatency(latency, jitter time.Duration) {
	n.mu.Lock()
	n.latency, n.jitter = latency, jitter
	n.mu.Unlock()
}

// SetLoss changes the packet loss rate.
func (n *Network) SetLoss(rate float64) {
	n.mu.Lock()
	n.loss = rate
	n.mu.Unlock()
}

// Partition cuts the given addresses off from every address not among
// them, both ways, packets and streams (open streams stall, as TCP does
// when the path goes away). heal undoes this one cut; Heal undoes all.
// Cuts add up: two members can reach each other only if every cut has
// both or neither.
func (n *Network) Partition(addrs []netip.Addr) (heal func()) {
	set := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		set[a.Unmap()] = true
	}
	n.mu.Lock()
	id := n.nextCut
	n.nextCut++
	n.cuts[id] = set
	n.mu.Unlock()
	return func() {
		n.mu.Lock()
		delete(n.cuts, id)
		n.mu.Unlock()
	}
}

// Heal removes every partition.
func (n *Network) Heal() {
	n.mu.Lock()
	clear(n.cuts)
	n.mu.Unlock()
}

// Kill makes addr's transports go silent, as a box that lost power: what
// they send vanishes, nothing reaches them, dials to or from them hang
// until their timeout (no reset, as across the overlay). Their memberlist
// keeps running. Revive undoes it.
func (n *Network) Kill(addr netip.Addr) {
	n.mu.Lock()
	n.killed[addr.Unmap()] = true
	n.mu.Unlock()
}

// Revive undoes Kill.
func (n *Network) Revive(addr netip.Addr) {
	n.mu.Lock()
	delete(n.killed, addr.Unmap())
	n.mu.Unlock()
}

// Counters returns the counters of the transport bound on addr (zero if
// none is).
func (n *Network) Counters(addr netip.AddrPort) Counters {
	n.mu.RLock()
	t := n.members[netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())]
	n.mu.RUnlock()
	if t == nil {
		return Counters{}
	}
	return t.Counters()
}

// reachableLocked reports whether a packet from a may reach b now.
func (n *Network) reachableLocked(a, b netip.Addr) bool {
	if n.killed[a] || n.killed[b] {
		return false
	}
	for _, cut := range n.cuts {
		if cut[a] != cut[b] {
			return false
		}
	}
	return true
}

// route is what a send needs to know, read under one lock.
type route struct {
	dst       *Transport // nil: nobody bound there
	reachable bool
	silent    bool // the sender is killed
	delay     time.Duration
	lost      bool
}

// route decides the fate of one packet (packet) or stream write from src
// to dst.
func (n *Network) route(src, dst netip.AddrPort, packet bool) route {
	n.mu.RLock()
	r := route{
		dst:       n.members[dst],
		silent:    n.killed[src.Addr()],
		reachable: n.reachableLocked(src.Addr(), dst.Addr()),
	}
	latency, jitter, loss := n.latency, n.jitter, n.loss
	n.mu.RUnlock()
	r.delay = latency
	if jitter > 0 || (packet && loss > 0) {
		n.rngMu.Lock()
		if jitter > 0 {
			r.delay += time.Duration(n.rng.Int64N(int64(2*jitter)+1)) - jitter
		}
		if packet && loss > 0 {
			r.lost = n.rng.Float64() < loss
		}
		n.rngMu.Unlock()
	}
	r.delay = max(r.delay, 0)
	return r
}

// oneWay is the current one-way latency without jitter (stream set-up).
func (n *Network) oneWay() time.Duration {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.latency
}

func (n *Network) unbind(t *Transport) {
	n.mu.Lock()
	if n.members[t.addr] == t {
		delete(n.members, t.addr)
	}
	n.mu.Unlock()
}
