package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// The tuning experiment (TUNE=1, part of lab-throughput): overlay
// throughput again under other Go runtime settings.

// defaultTuneVariants are the Go runtime settings TUNE=1 tries; "defaults"
// runs the daemons with none, as a control after the others.
const defaultTuneVariants = "GOGC=400; GOMAXPROCS=1; GOGC=off GOMEMLIMIT=64MiB; defaults"

type tuneVariant struct {
	name string
	env  []string
}

// parseTuneVariants reads "K=V K=V; K=V; defaults": variants separated by
// semicolons, each a space-separated environment.
func parseTuneVariants(spec string) ([]tuneVariant, error) {
	if strings.TrimSpace(spec) == "" {
		spec = defaultTuneVariants
	}
	var out []tuneVariant
	for _, part := range strings.Split(spec, ";") {
		env := strings.Fields(part)
		if len(env) == 0 {
			continue
		}
		if len(env) == 1 && env[0] == "defaults" {
			out = append(out, tuneVariant{name: "defaults", env: nil})
			continue
		}
		for _, kv := range env {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return nil, fmt.Errorf("tune variant %q: %q is not KEY=VALUE", strings.TrimSpace(part), kv)
			}
		}
		out = append(out, tuneVariant{name: strings.Join(env, " "), env: env})
	}
	return out, nil
}

// tuneThroughput restarts node1 and node2 under different Go runtime
// settings and measures overlay throughput against the bare wireguard-go
// pair (still up from labThroughput), run by run, so each variant gets its
// own ratio. The daemons inherit this process's environment.
func tuneThroughput(ctx context.Context, s *settings, r *Report, l *benchLab, bareDst string) error {
	restart := func(env []string) error {
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
		defer func() {
			for _, kv := range env {
				k, _, _ := strings.Cut(kv, "=")
				os.Unsetenv(k)
			}
		}()
		for _, n := range l.Nodes[:2] {
			n.Stop(5 * time.Second)
			if err := n.Up(); err != nil {
				return err
			}
		}
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		return l.WaitComplete(wctx)
	}
	const g = "throughput"
	for _, v := range s.tuneVariants {
		if err := restart(v.env); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		var bw, ov []float64
		for i := 0; i < s.runs; i++ {
			order := []string{bareDst, l.Nodes[1].Addr}
			if i%2 == 1 {
				order = []string{l.Nodes[1].Addr, bareDst}
			}
			for _, d := range order {
				x, err := iperf(ctx, l, 0, d, s.duration)
				if err != nil {
					return fmt.Errorf("%s: %w", v.name, err)
				}
				if d == bareDst {
					bw = append(bw, x)
				} else {
					ov = append(ov, x)
				}
			}
			logf("  tune %s run %d: bare-wg %.3f  meshnode overlay %.3f Gbit/s", v.name, i+1, bw[i], ov[i])
		}
		fb := fig(g, "tune "+v.name+": bare wireguard-go", "Gbit/s", bw)
		fo := r.add(fig(g, "tune "+v.name+": meshnode overlay", "Gbit/s", ov))
		r.add(ratio(g, "tune "+v.name+": overlay / bare wireguard-go", fo, fb))
	}
	return nil
}
