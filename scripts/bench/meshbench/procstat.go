package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Per-process CPU and memory from /proc, for the cost, nats and scale
// phases.

// procSeries is one process sampled by sampleProcs: RSS in MiB every
// second, CPU in % of one core per 10 s window (and a shorter last one).
type procSeries struct {
	rss, cpu []float64
}

// sampleProcs samples every pid once a second for d.
func sampleProcs(ctx context.Context, pids []int, d time.Duration) ([]procSeries, error) {
	tck := clkTck()
	ser := make([]procSeries, len(pids))
	ticks := make([]int64, len(pids))
	at := make([]time.Time, len(pids))
	for i, pid := range pids {
		_, t, err := procSample(pid)
		if err != nil {
			return nil, err
		}
		ticks[i], at[i] = t, time.Now()
	}
	end := time.Now().Add(d)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	sec := 0
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		sec++
		for i, pid := range pids {
			rss, t, err := procSample(pid)
			if err != nil {
				return nil, err
			}
			ser[i].rss = append(ser[i].rss, float64(rss)/(1<<20))
			if sec%10 == 0 || !time.Now().Before(end) {
				now := time.Now()
				ser[i].cpu = append(ser[i].cpu, 100*float64(t-ticks[i])/tck/now.Sub(at[i]).Seconds())
				ticks[i], at[i] = t, now
			}
		}
	}
	return ser, nil
}

// procSample reads VmRSS (bytes) and utime+stime (clock ticks) of pid.
func procSample(pid int) (rss int64, ticks int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb * 1024
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime 14, stime 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return rss, ut + st, nil
}

func clkTck() float64 {
	if v, err := strconv.Atoi(sh("getconf", "CLK_TCK")); err == nil && v > 0 {
		return float64(v)
	}
	return 100
}
