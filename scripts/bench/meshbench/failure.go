package main

import (
	"context"
	"fmt"
	"time"

	"github.com/meshnode/meshnode/mesh/api"
)

// failureDetection kills node3 with SIGKILL and times until every other
// node shows it not alive and has dropped its NATS route from the
// expected set; then restarts it and waits for a full mesh again.
func failureDetection(ctx context.Context, s *settings, r *Report, l *benchLab) error {
	victim := l.Nodes[len(l.Nodes)-1]
	survivors := l.Nodes[:len(l.Nodes)-1]
	wantRoutes := len(l.Nodes) - 2
	var all, firstDead []float64
	for run := 0; run < s.failRuns; run++ {
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err := l.WaitComplete(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("before run %d: %w", run+1, err)
		}
		t0 := time.Now()
		victim.Kill()
		dead := make([]time.Duration, len(survivors))
		done := make([]time.Duration, len(survivors))
		err = waitFor(ctx, 60*time.Second, victim.Name+" detected as failed", func() bool {
			ok := true
			for i, n := range survivors {
				if done[i] != 0 {
					continue
				}
				st := status(n)
				if st == nil {
					ok = false
					continue
				}
				gone := true
				for _, m := range st.Members {
					if m.Name == victim.Name && m.State == api.StateAlive {
						gone = false
					}
				}
				el := time.Since(t0)
				if gone && dead[i] == 0 {
					dead[i] = el
				}
				if gone && st.NATS.RoutesExpected == wantRoutes {
					done[i] = el
				} else {
					ok = false
				}
			}
			return ok
		})
		if err != nil {
			return fmt.Errorf("run %d: %w", run+1, err)
		}
		var worst, first time.Duration
		for i := range survivors {
			worst = max(worst, done[i])
			if first == 0 || dead[i] < first {
				first = dead[i]
			}
		}
		all = append(all, worst.Seconds())
		firstDead = append(firstDead, first.Seconds())
		logf("  failure run %d: every survivor dropped %s after %.2f s (first marked it not alive after %.2f s)", run+1, victim.Name, worst.Seconds(), first.Seconds())
		if err := victim.Up(); err != nil {
			return err
		}
		uctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err = victim.WaitUp(uctx)
		cancel()
		if err != nil {
			return err
		}
	}
	const g = "failure"
	r.add(fig(g, "kill -9 → every survivor: member not alive + NATS route dropped", "s", all)).goalBelow(3, "< 3 s")
	r.add(fig(g, "kill -9 → first survivor marks it not alive", "s", firstDead))
	return nil
}
