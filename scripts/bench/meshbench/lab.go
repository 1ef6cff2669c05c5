package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/scripts/meshlab"
	"github.com/meshnode/meshnode/scripts/netns"
)

// benchLab is a running mesh of real meshnode processes plus the helper
// processes the benchmark starts in its namespaces (killed by PID).
type benchLab struct {
	*meshlab.Lab
	addrs []string // overlay address per node
	dir   string

	mu    sync.Mutex
	procs []*proc
}

// proc is a helper process and a channel closed when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// meshTiming is one mesh start-up.
type meshTiming struct {
	nodes    int
	joinPing []float64 // per joiner: join started → first overlay ping to the admitting node, s
	complete float64   // last join started → every node complete, s
}

// withLab starts an n-node mesh, times it, runs fn and tears it down.
func withLab(ctx context.Context, s *settings, n int, fn func(*benchLab, meshTiming) error) error {
	dir, err := os.MkdirTemp("", "meshbench-lab-")
	if err != nil {
		return err
	}
	bin := s.meshnode
	if os.Getenv("PROFILE") == "1" {
		// Nodes run mesh.Node inside meshbench (profnode), which writes
		// heap (SIGUSR1) and CPU (SIGUSR2) profiles.
		bin = filepath.Join(dir, "meshnode-prof")
		script := fmt.Sprintf("#!/bin/sh\nexec %q profnode %q \"$@\"\n", s.self, s.meshnode)
		if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
			return err
		}
	}
	lab, err := meshlab.New(bin, dir)
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	lab.Fast = s.fast
	l := &benchLab{Lab: lab, dir: dir}
	ok := false
	defer func() {
		l.killProcs()
		lab.Close()
		if keep := os.Getenv("KEEP"); keep == "" || (ok && keep != "all") {
			os.RemoveAll(dir)
		} else {
			logf("lab logs kept in %s", dir)
		}
	}()
	t, err := l.start(ctx, n)
	if err != nil {
		return err
	}
	logf("%d-node mesh complete: %.2f s after the last join (join → first ping %v s)", n, t.complete, fmtList(t.joinPing))
	err = fn(l, t)
	ok = err == nil
	return err
}

func fmtList(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// start brings up an n-node mesh the way an operator does: init + up on
// the first node, then a token per newcomer and `meshnode join` on each,
// all started back to back.
func (l *benchLab) start(ctx context.Context, n int) (meshTiming, error) {
	t := meshTiming{nodes: n}
	for i := 1; i <= n; i++ {
		if _, err := l.AddNode(fmt.Sprintf("node%d", i)); err != nil {
			return t, err
		}
	}
	expect := fmt.Sprint(min(n, 3))
	first := l.Nodes[0]
	if err := first.Init("bench", "--bootstrap-expect", expect); err != nil {
		return t, err
	}
	if err := first.Up(); err != nil {
		return t, err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := first.WaitUp(wctx); err != nil {
		return t, err
	}
	st, err := first.Status()
	if err != nil {
		return t, err
	}
	adminAddr := st.Addr.String()
	tokens := make([]string, n)
	for i := 1; i < n; i++ {
		if tokens[i], err = first.Invite(); err != nil {
			return t, err
		}
	}
	var wg sync.WaitGroup
	pings := make([]float64, n)
	pingErr := make([]error, n)
	var last time.Time
	for i := 1; i < n; i++ {
		node := l.Nodes[i]
		start := time.Now()
		if err := node.Join(first, tokens[i], "--bootstrap-expect", expect); err != nil {
			return t, err
		}
		last = start
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pings[i], pingErr[i] = firstPing(wctx, node.NS, adminAddr, start)
		}(i)
	}
	// Wait in 5 s slices so a slow mesh says what it is still missing.
	for {
		sctx, scancel := context.WithTimeout(wctx, 5*time.Second)
		err = l.WaitComplete(sctx)
		scancel()
		if err == nil || wctx.Err() != nil {
			break
		}
		logf("  %d-node mesh after %.0f s: %v", n, time.Since(last).Seconds(), err)
	}
	t.complete = time.Since(last).Seconds()
	wg.Wait()
	if err != nil {
		return t, fmt.Errorf("%w\n%s", err, l.tails())
	}
	for i := 1; i < n; i++ {
		if pingErr[i] != nil {
			return t, pingErr[i]
		}
		t.joinPing = append(t.joinPing, pings[i])
	}
	for _, nd := range l.Nodes {
		st, err := nd.Status()
		if err != nil {
			return t, err
		}
		l.addrs = append(l.addrs, st.Addr.String())
	}
	return t, nil
}

func (l *benchLab) tails() string {
	var b strings.Builder
	for _, n := range l.Nodes {
		fmt.Fprintf(&b, "--- %s log tail:\n%s\n", n.Name, n.Tail(15))
	}
	return b.String()
}

// firstPing pings addr from inside ns until the first echo reply and
// returns the seconds since start.
func firstPing(ctx context.Context, ns *netns.NS, addr string, start time.Time) (float64, error) {
	for {
		// One probe every 20 ms for up to 1 s per ping process: no
		// 1-second reply timeout sets the resolution.
		cmd := ns.Command("ping", "-6", "-n", "-q", "-c", "1", "-i", "0.02", "-w", "1", addr)
		if err := cmd.Run(); err == nil {
			return time.Since(start).Seconds(), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no overlay ping from %s to %s: %w", ns.Name, addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startProc starts a helper process inside node i's namespace; it is
// killed by PID when the lab closes.
func (l *benchLab) startProc(i int, name string, args ...string) (*exec.Cmd, string, error) {
	cmd := l.Nodes[i].NS.Command(name, args...)
	logPath := filepath.Join(l.dir, fmt.Sprintf("%s-%s-%d.log", l.Nodes[i].Name, filepath.Base(name), time.Now().UnixNano()))
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, "", err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, "", err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return cmd, logPath, nil
}

func (l *benchLab) killProcs() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.procs {
		p.cmd.Process.Signal(os.Interrupt)
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, p := range l.procs {
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	l.procs = nil
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	end := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(end) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// status is Lab's Status without the error plumbing.
func status(n *meshlab.Node) *api.Status {
	st, err := n.Status()
	if err != nil {
		return nil
	}
	return st
}

func jsonIndent(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}
