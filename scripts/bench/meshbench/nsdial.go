package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// nsDialer dials from inside a named network namespace: the socket is
// created on an OS thread switched into the namespace and stays there, so
// one benchmark process can hold client connections in several namespaces
// (and time them on one clock). It implements nats.CustomDialer.
type nsDialer struct {
	ns      string // name under /var/run/netns
	timeout time.Duration
}

func (d *nsDialer) Dial(network, address string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + d.ns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("setns %s: %w", d.ns, err)}
			return
		}
		dl := net.Dialer{Timeout: d.timeout}
		c, err := dl.Dial(network, address)
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			// Leave the thread locked: the runtime retires it when this
			// goroutine ends, so no other goroutine runs in the namespace.
			if c != nil {
				ch <- result{c: c}
				return
			}
			ch <- result{err: err}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
