package main

import (
	"context"
	"fmt"
)

// The mesh phase: time to mesh. Every lab start is timed (withLab); this
// phase starts more 3- and 8-node meshes and reports the samples.

// timeToMesh starts the 3- and 8-node meshes the settings ask for beyond
// the first (the main mesh's start-up) and reports every sample.
func timeToMesh(ctx context.Context, s *settings, r *Report, first []meshTiming) error {
	ts := map[int][]meshTiming{3: first}
	for _, c := range []struct{ n, runs int }{{3, s.mesh3Runs - len(first)}, {8, s.mesh8Runs}} {
		for i := 0; i < c.runs && ctx.Err() == nil; i++ {
			err := withLab(ctx, s, c.n, func(_ *benchLab, t meshTiming) error {
				ts[c.n] = append(ts[c.n], t)
				return nil
			})
			if err != nil {
				return fmt.Errorf("%d-node mesh run %d: %w", c.n, i+1, err)
			}
		}
	}
	const g = "mesh"
	for _, n := range []int{3, 8} {
		var ping, comp []float64
		for _, t := range ts[n] {
			ping = append(ping, t.joinPing...)
			comp = append(comp, t.complete)
		}
		if len(comp) == 0 {
			continue
		}
		r.add(fig(g, fmt.Sprintf("%d nodes: join → first overlay ping (every joiner)", n), "s", ping))
		f := r.add(fig(g, fmt.Sprintf("%d nodes: last join started → full WireGuard + NATS route mesh", n), "s", comp))
		if n == 3 {
			f.goalBelow(3, "< 3 s")
		}
	}
	return nil
}
