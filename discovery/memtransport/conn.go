package memtransport

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// pipe is one direction of a stream: chunks written by one end, each
// readable from its arrival time on, in order.
type pipe struct {
	// mu guards everything below.
	mu     sync.Mutex
	chunks []chunk
	last   time.Time // arrival of the last chunk: later writes never overtake it
	// eof: the writer closed; the reader sees EOF from eofAt, after the
	// data (the FIN travels like data).
	eof   bool
	eofAt time.Time
	// gone: the reader closed; writes fail.
	gone    bool
	readDL  time.Time
	writeDL time.Time
	wake    chan struct{} // closed and replaced on every change
}

type chunk struct {
	at time.Time
	b  []byte
}

func newPipe() *pipe { return &pipe{wake: make(chan struct{})} }

// changedLocked wakes every goroutine waiting on the pipe.
func (p *pipe) changedLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// conn is one end of an in-memory stream between two transports.
type conn struct {
	local, remote *Transport
	rd, wr        *pipe
	closeOnce     sync.Once
}

var _ net.Conn = (*conn)(nil)

// newConnPair connects a (the dialler) and b.
func newConnPair(a, b *Transport) (client, server *conn) {
	ab, ba := newPipe(), newPipe()
	return &conn{local: a, remote: b, rd: ba, wr: ab}, &conn{local: b, remote: a, rd: ab, wr: ba}
}

func (c *conn) LocalAddr() net.Addr  { return c.local.tcp }
func (c *conn) RemoteAddr() net.Addr { return c.remote.tcp }

func (c *conn) Read(b []byte) (int, error) {
	p := c.rd
	for {
		p.mu.Lock()
		if p.gone {
			p.mu.Unlock()
			return 0, net.ErrClosed
		}
		now := time.Now()
		if !p.readDL.IsZero() && !now.Before(p.readDL) {
			p.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
		var next time.Time // when something may change without a wake-up
		if len(p.chunks) > 0 {
			head := &p.chunks[0]
			if !head.at.After(now) {
				n := copy(b, head.b)
				head.b = head.b[n:]
				if len(head.b) == 0 {
					p.chunks[0] = chunk{}
					p.chunks = p.chunks[1:]
				}
				p.mu.Unlock()
				c.local.stats.streamBytesReceived.Add(uint64(n))
				return n, nil
			}
			next = head.at
		} else if p.eof {
			if !p.eofAt.After(now) {
				p.mu.Unlock()
				return 0, io.EOF
			}
			next = p.eofAt
		}
		if !p.readDL.IsZero() && (next.IsZero() || p.readDL.Before(next)) {
			next = p.readDL
		}
		wake := p.wake
		p.mu.Unlock()
		if next.IsZero() {
			<-wake
			continue
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// Write queues b for the other end after the network's latency. Between
// members that cannot reach each other (partition, killed) the bytes
// vanish: the stream stalls and the reader's deadline ends it.
func (c *conn) Write(b []byte) (int, error) {
	p := c.wr
	r := c.local.net.route(c.local.addr, c.remote.addr, false)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.eof:
		return 0, net.ErrClosed
	case p.gone:
		return 0, io.ErrClosedPipe
	case !p.writeDL.IsZero() && !time.Now().Before(p.writeDL):
		return 0, os.ErrDeadlineExceeded
	}
	if r.silent {
		return len(b), nil
	}
	c.local.stats.streamBytesSent.Add(uint64(len(b)))
	if !r.reachable || len(b) == 0 {
		return len(b), nil
	}
	at := time.Now().Add(r.delay)
	if at.Before(p.last) {
		at = p.last
	}
	p.last = at
	p.chunks = append(p.chunks, chunk{at: at, b: append([]byte(nil), b...)})
	p.changedLocked()
	return len(b), nil
}

// Close ends both directions: the other end reads what was sent, then
// EOF; its writes fail.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		delay := c.local.net.oneWay()
		w := c.wr
		w.mu.Lock()
		w.eof = true
		w.eofAt = time.Now().Add(delay)
		if w.eofAt.Before(w.last) {
			w.eofAt = w.last
		}
		w.changedLocked()
		w.mu.Unlock()
		r := c.rd
		r.mu.Lock()
		r.gone = true
		r.chunks = nil
		r.changedLocked()
		r.mu.Unlock()
	})
	return nil
}

func (c *conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	p := c.rd
	p.mu.Lock()
	p.readDL = t
	p.changedLocked()
	p.mu.Unlock()
	return nil
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	p := c.wr
	p.mu.Lock()
	p.writeDL = t
	p.mu.Unlock()
	return nil
}
