package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Per-process CPU and memory from /proc, for the cost and nats phases.

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
