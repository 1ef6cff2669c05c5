package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/scripts/meshlab"
	"github.com/meshnode/meshnode/scripts/netns"
)

// benchLab is a running mesh of real meshnode processes (scripts/meshlab,
// which also stops the helper processes the phases start with Spawn).
type benchLab struct {
	*meshlab.Lab
	dir string
}

// meshTiming is one mesh start-up.
type meshTiming struct {
	nodes    int
	joinPing []float64 // per joiner: join started → first overlay ping to the admitting node, s
	complete float64   // last join started → every node complete, s
}

// withLab starts an n-node mesh, times it, runs fn and tears it down.
func withLab(ctx context.Context, s *settings, n int, fn func(*benchLab, meshTiming) error) error {
	return withLabConfig(ctx, s, n, nil, fn)
}

// withLabConfig is withLab with configure (when not nil) applied to the lab
// before its nodes start (e.g. MaxCore).
func withLabConfig(ctx context.Context, s *settings, n int, configure func(*meshlab.Lab), fn func(*benchLab, meshTiming) error) error {
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
	if configure != nil {
		configure(lab)
	}
	l := &benchLab{Lab: lab, dir: dir}
	ok := false
	defer func() {
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

// start brings up an n-node mesh the way an operator does (meshlab's
// Launch: init + up on the first node, then a token per newcomer and
// `meshnode join` on each, all started back to back) and times it.
func (l *benchLab) start(ctx context.Context, n int) (meshTiming, error) {
	t := meshTiming{nodes: n}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("node%d", i+1)
	}
	// 60 s, and more for a big mesh: every start-up shares the same CPUs.
	wctx, cancel := context.WithTimeout(ctx, max(60*time.Second, time.Duration(n)*6*time.Second))
	defer cancel()
	var wg sync.WaitGroup
	pings := make([]float64, n)
	pingErr := make([]error, n)
	var last time.Time
	joiner := 0
	err := l.Launch(wctx, "bench", names, func(node *meshlab.Node, start time.Time) {
		// Launch returned from the first node's WaitUp, so its Addr is known.
		adminAddr := l.Nodes[0].Addr
		joiner++
		i := joiner
		last = start
		wg.Add(1)
		go func() {
			defer wg.Done()
			pings[i], pingErr[i] = firstPing(wctx, node.NS, adminAddr, start)
		}()
	})
	if err != nil {
		return t, err // the deferred cancel ends the pings
	}
	// Wait in 1 s slices so a slow mesh says what it is still missing.
	for {
		sctx, scancel := context.WithTimeout(wctx, time.Second)
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
		return t, fmt.Errorf("%w\n%s", err, l.Tails(15))
	}
	for i := 1; i < n; i++ {
		if pingErr[i] != nil {
			return t, pingErr[i]
		}
		t.joinPing = append(t.joinPing, pings[i])
	}
	// WaitComplete read every node's status: each Addr is known.
	for _, nd := range l.Nodes {
		if nd.Addr == "" {
			return t, fmt.Errorf("%s: no overlay address in its status", nd.Name)
		}
	}
	return t, nil
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
