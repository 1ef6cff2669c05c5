package nstest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// The helper's TCP side: listeners that echo, and client connections the
// test drives by number, so that sockets live in the helper's namespace
// next to its device. Only the helper's request loop touches conns and
// blocked; the reading goroutines report through their channels.

type readResult struct {
	err error
	at  time.Time
}

type tcpState struct {
	conns   map[int]net.Conn
	blocked map[int]chan readResult
	cutAt   time.Time // when the last cutoff request was handled
}

func newTCPState() *tcpState {
	return &tcpState{conns: make(map[int]net.Conn), blocked: make(map[int]chan readResult)}
}

func (s *tcpState) handle(req request, rep *reply) error {
	switch req.Op {
	case "listen":
		ln, err := net.Listen("tcp", req.Addr.String())
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(c, c); c.Close() }()
			}
		}()
	case "dial":
		start := time.Now()
		c, err := net.DialTimeout("tcp", req.Addr.String(), 10*time.Second)
		if err != nil {
			rep.ConnErr, rep.Elapsed = errnoName(err), time.Since(start)
			if !s.cutAt.IsZero() {
				rep.Elapsed = time.Since(s.cutAt)
			}
			return nil
		}
		rep.Conn = len(s.conns) + 1
		s.conns[rep.Conn] = c
	case "echo":
		c, ok := s.conns[req.Conn]
		if !ok {
			return fmt.Errorf("no connection %d", req.Conn)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		defer c.SetDeadline(time.Time{})
		msg := []byte(fmt.Sprintf("ping %d\n", req.Conn))
		if _, err := c.Write(msg); err != nil {
			rep.ConnErr = errnoName(err)
			return nil
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			rep.ConnErr = errnoName(err)
		} else if string(got) != string(msg) {
			return fmt.Errorf("echo on %d: got %q, sent %q", req.Conn, got, msg)
		}
	case "block":
		c, ok := s.conns[req.Conn]
		if !ok {
			return fmt.Errorf("no connection %d", req.Conn)
		}
		done := make(chan readResult, 1)
		s.blocked[req.Conn] = done
		go func() {
			// Long enough that only a reset ends it in time.
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			_, err := c.Read(make([]byte, 1))
			done <- readResult{err, time.Now()}
		}()
	case "await":
		done, ok := s.blocked[req.Conn]
		if !ok {
			return fmt.Errorf("connection %d is not blocked in read", req.Conn)
		}
		select {
		case r := <-done:
			delete(s.blocked, req.Conn)
			rep.ConnErr = errnoName(r.err)
			rep.Elapsed = r.at.Sub(s.cutAt)
		case <-time.After(req.Wait):
			rep.ConnErr = "still blocked"
		}
	}
	return nil
}

func errnoName(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.ECONNRESET):
		return "ECONNRESET"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED"
	case errors.Is(err, syscall.EPIPE):
		return "EPIPE"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF):
		return "EOF"
	}
	return err.Error()
}

// The test's side of the TCP operations.

func (h *holder) listen(addr netip.AddrPort) {
	h.t.Helper()
	h.call(request{Op: "listen", Addr: addr})
}

// dial connects to addr and returns the connection's number, or how it
// failed and how long after the last cutoff.
func (h *holder) dial(addr netip.AddrPort) (conn int, connErr string, elapsed time.Duration) {
	h.t.Helper()
	rep := h.call(request{Op: "dial", Addr: addr})
	return rep.Conn, rep.ConnErr, rep.Elapsed
}

// echo sends a line over conn and reads it back; "" when that worked.
func (h *holder) echo(conn int) string {
	h.t.Helper()
	return h.call(request{Op: "echo", Conn: conn}).ConnErr
}

// block starts a read on conn that nothing but an error ends.
func (h *holder) block(conn int) {
	h.t.Helper()
	h.call(request{Op: "block", Conn: conn})
}

// await waits up to wait for conn's blocked read to fail, and returns how
// ("still blocked" if it did not) and how long after the last cutoff.
func (h *holder) await(conn int, wait time.Duration) (string, time.Duration) {
	h.t.Helper()
	rep := h.call(request{Op: "await", Conn: conn, Wait: wait})
	return rep.ConnErr, rep.Elapsed
}
