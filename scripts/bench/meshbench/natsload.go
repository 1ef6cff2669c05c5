package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshnode/meshnode/identity"
)

// natsEnd is one client end of a NATS path: which namespace it dials from,
// which server it connects to, with which node identity.
type natsEnd struct {
	ns         string
	url        string // tls://host:port
	serverName string // TLS server name (the server node's overlay address)
	state      identity.StateDir
}

// connect connects like `meshnode nats` does (TLS pinned to the mesh CA,
// the node's nkey), from inside e.ns.
func (e natsEnd) connect(name string) (*nats.Conn, error) {
	m, err := e.state.LoadMember(time.Now())
	if err != nil {
		return nil, err
	}
	nk, err := nats.NkeyOptionFromSeed(e.state.NKeyPath())
	if err != nil {
		return nil, err
	}
	tc := identity.ClientTLS(m.Trust, nil)
	tc.ServerName = e.serverName
	return nats.Connect(e.url, nk, nats.Secure(tc), nats.Name(name),
		nats.SetCustomDialer(&nsDialer{ns: e.ns, timeout: 5 * time.Second}),
		nats.Timeout(5*time.Second), nats.MaxReconnects(-1),
		// The benchmark sizes its own window; never drop on the client.
		nats.ReconnectBufSize(-1))
}

type natsPair struct {
	pub, sub *nats.Conn
	prefix   string
}

func randSubject() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "bench." + hex.EncodeToString(b)
}

// openPair connects a publisher at from and a subscriber/responder at to.
func openPair(from, to natsEnd) (*natsPair, error) {
	pub, err := from.connect("meshbench-pub")
	if err != nil {
		return nil, fmt.Errorf("publisher connect %s: %w", from.url, err)
	}
	sub, err := to.connect("meshbench-sub")
	if err != nil {
		pub.Close()
		return nil, fmt.Errorf("subscriber connect %s: %w", to.url, err)
	}
	return &natsPair{pub: pub, sub: sub, prefix: randSubject()}, nil
}

func (p *natsPair) Close() { p.pub.Close(); p.sub.Close() }

// waitInterest makes sure the publisher's server knows the subscriber's
// interest (and the subscriber's server the publisher's): route interest
// propagates asynchronously, in order per route. Call it after every
// subscription on both sides is in place.
func (p *natsPair) waitInterest(ctx context.Context) error {
	subj := p.prefix + ".ready"
	s, err := p.sub.Subscribe(subj, func(m *nats.Msg) { m.Respond(nil) })
	if err != nil {
		return err
	}
	defer s.Unsubscribe()
	if err := p.sub.Flush(); err != nil {
		return err
	}
	for {
		if _, err := p.pub.Request(subj, nil, 200*time.Millisecond); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no route interest between the servers: %w", ctx.Err())
		}
	}
}

// throughputResult is one flow-controlled publish run.
type throughputResult struct {
	Msgs    int
	Elapsed time.Duration
}

func (r throughputResult) perSec() float64 { return float64(r.Msgs) / r.Elapsed.Seconds() }

// throughput publishes size-byte messages from pub to sub as fast as a
// window of unacknowledged messages allows, for at most maxMsgs messages or
// maxTime, and returns how many the subscriber acknowledged and how long
// that took. The window keeps the run honest: core NATS has no flow
// control, and without one a fast publisher measures how quickly messages
// are dropped, not delivered.
func (p *natsPair) throughput(ctx context.Context, size, maxMsgs int, maxTime time.Duration) (throughputResult, error) {
	const windowBytes = 4 << 20
	ackEvery := max(1, min(1000, windowBytes/8/size))
	window := int64(8 * ackEvery)
	data, ackSubj := p.prefix+".data", p.prefix+".ack"

	var received atomic.Int64
	s, err := p.sub.Subscribe(data, func(m *nats.Msg) {
		n := received.Add(1)
		if n%int64(ackEvery) == 0 {
			p.sub.Publish(ackSubj, []byte(fmt.Sprint(n)))
		}
	})
	if err != nil {
		return throughputResult{}, err
	}
	defer s.Unsubscribe()
	s.SetPendingLimits(-1, -1)

	var acked atomic.Int64
	kick := make(chan struct{}, 1)
	as, err := p.pub.Subscribe(ackSubj, func(m *nats.Msg) {
		var n int64
		fmt.Sscan(string(m.Data), &n)
		for {
			cur := acked.Load()
			if n <= cur || acked.CompareAndSwap(cur, n) {
				break
			}
		}
		select {
		case kick <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return throughputResult{}, err
	}
	defer as.Unsubscribe()
	if err := p.pub.Flush(); err != nil {
		return throughputResult{}, err
	}
	if err := p.waitInterest(ctx); err != nil {
		return throughputResult{}, err
	}

	payload := make([]byte, size)
	rand.Read(payload)
	start := time.Now()
	deadline := start.Add(maxTime)
	sent := 0
	stall := time.NewTimer(time.Hour)
	defer stall.Stop()
	for sent < maxMsgs {
		if sent%ackEvery == 0 && time.Now().After(deadline) {
			break
		}
		for int64(sent)-acked.Load() >= window {
			stall.Reset(5 * time.Second)
			select {
			case <-kick:
			case <-stall.C:
				return throughputResult{}, fmt.Errorf("%d B: no acknowledgement for 5 s (sent %d, acked %d, received %d)", size, sent, acked.Load(), received.Load())
			}
		}
		if err := p.pub.Publish(data, payload); err != nil {
			return throughputResult{}, err
		}
		sent++
	}
	// Round down to the last acknowledged batch boundary.
	want := int64(sent - sent%ackEvery)
	if want == 0 {
		return throughputResult{}, errors.New("no full batch sent")
	}
	p.pub.Flush()
	for acked.Load() < want {
		stall.Reset(5 * time.Second)
		select {
		case <-kick:
		case <-stall.C:
			return throughputResult{}, fmt.Errorf("%d B: final acknowledgement missing (want %d, acked %d, received %d)", size, want, acked.Load(), received.Load())
		}
	}
	return throughputResult{Msgs: int(want), Elapsed: time.Since(start)}, nil
}

// latency runs sequential request-reply round trips (the responder echoes
// the payload) and returns p50 and p99 in microseconds.
func (p *natsPair) latency(ctx context.Context, size, count int, maxTime time.Duration) (p50, p99 float64, n int, err error) {
	subj := p.prefix + ".rr"
	s, err := p.sub.Subscribe(subj, func(m *nats.Msg) { m.Respond(m.Data) })
	if err != nil {
		return 0, 0, 0, err
	}
	defer s.Unsubscribe()
	if err := p.sub.Flush(); err != nil {
		return 0, 0, 0, err
	}
	if err := p.waitInterest(ctx); err != nil {
		return 0, 0, 0, err
	}
	payload := make([]byte, size)
	rand.Read(payload)
	// Warm up (TLS buffers, inbox subscription, route caches).
	for i := 0; i < 20; i++ {
		if _, err := p.pub.Request(subj, payload, 2*time.Second); err != nil {
			return 0, 0, 0, fmt.Errorf("warm-up request: %w", err)
		}
	}
	var ds []time.Duration
	end := time.Now().Add(maxTime)
	for len(ds) < count && time.Now().Before(end) {
		t := time.Now()
		if _, err := p.pub.Request(subj, payload, 2*time.Second); err != nil {
			return 0, 0, 0, fmt.Errorf("request %d: %w", len(ds), err)
		}
		ds = append(ds, time.Since(t))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(f float64) float64 {
		i := int(f * float64(len(ds)-1))
		return float64(ds[i].Nanoseconds()) / 1e3
	}
	return q(0.50), q(0.99), len(ds), nil
}
