package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// settings are the run's knobs (scripts/bench/run maps environment
// variables onto these flags).
type settings struct {
	meshnode, wgbare, self string
	out, markdown          string
	wgThroughput           string // path of scripts/bench/wg-throughput ("" skips it)
	runs                   int    // iperf3 runs per path
	duration               int    // iperf3 seconds per run
	natsRuns               int
	natsTime               time.Duration // per throughput run
	natsMsgs               int           // max messages per throughput run
	latCount               int           // request-reply round trips per latency run
	mesh3Runs, mesh8Runs   int
	failRuns               int
	scaleNodes, scaleRuns  int
	scaleIdle              time.Duration
	idle                   time.Duration
	fast                   bool
	tune                   bool
	tuneVariants           []tuneVariant
	skip                   map[string]bool
	binSize                int64
}

func runBench(args []string) error {
	var s settings
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&s.meshnode, "meshnode", "", "meshnode binary (built for the lab)")
	fs.StringVar(&s.wgbare, "wgbare", "", "wgbare binary (bare wireguard-go reference)")
	fs.StringVar(&s.out, "out", "out/bench.json", "JSON report")
	fs.StringVar(&s.markdown, "markdown", "", "also write the table as Markdown here")
	fs.StringVar(&s.wgThroughput, "wg-throughput", "", "scripts/bench/wg-throughput to run first")
	fs.IntVar(&s.runs, "runs", 3, "iperf3 runs per path")
	fs.IntVar(&s.duration, "duration", 5, "iperf3 seconds per run")
	fs.IntVar(&s.natsRuns, "nats-runs", 3, "NATS runs per payload size and path")
	fs.DurationVar(&s.natsTime, "nats-time", 2*time.Second, "NATS throughput run length")
	fs.IntVar(&s.natsMsgs, "nats-msgs", 1000000, "NATS throughput run message cap")
	fs.IntVar(&s.latCount, "lat-count", 2000, "request-reply round trips per latency run")
	fs.IntVar(&s.mesh3Runs, "mesh3-runs", 3, "3-node time-to-mesh runs")
	fs.IntVar(&s.mesh8Runs, "mesh8-runs", 2, "8-node time-to-mesh runs")
	fs.IntVar(&s.failRuns, "fail-runs", 3, "failure detection runs")
	fs.IntVar(&s.scaleNodes, "scale-nodes", 20, "nodes of the scale phase's mesh")
	fs.IntVar(&s.scaleRuns, "scale-runs", 1, "scale phase runs (each starts the mesh twice: default core, all core)")
	fs.DurationVar(&s.scaleIdle, "scale-idle", 60*time.Second, "scale phase idle sampling time")
	fs.DurationVar(&s.idle, "idle", 150*time.Second, "idle cost sampling time")
	fs.BoolVar(&s.fast, "fast-timers", false, "run nodes with --fast-timers (default: the shipped timers)")
	fs.BoolVar(&s.tune, "tune", false, "also restart two daemons under other Go runtime settings (GOGC) and measure overlay throughput again")
	tuneVariants := fs.String("tune-variants", defaultTuneVariants, `with -tune: the settings to try, "K=V K=V; K=V; defaults"`)
	fs.Int64Var(&s.binSize, "bin-size", 0, "size of the stripped static build, bytes")
	var names []string
	for _, p := range phases {
		names = append(names, p.name)
	}
	skip := fs.String("skip", "", "comma-separated phases to skip: "+strings.Join(names, ","))
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if s.tuneVariants, err = parseTuneVariants(*tuneVariants); err != nil {
		return fmt.Errorf("--tune-variants: %w", err)
	}
	s.skip = map[string]bool{}
	for _, p := range strings.Split(*skip, ",") {
		if p = strings.TrimSpace(p); p != "" {
			s.skip[p] = true
		}
	}
	if s.meshnode == "" {
		return fmt.Errorf("--meshnode is required")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	s.self = self

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	r := &Report{Started: time.Now().UTC(), Machine: machine(), Checks: map[string]string{}, Settings: map[string]string{}}
	fs.VisitAll(func(f *flag.Flag) { r.Settings[f.Name] = f.Value.String() })
	logf("load at start: %s", r.Machine["load_start"])

	step := func(name string, fn func() error) {
		if s.skip[name] || ctx.Err() != nil {
			return
		}
		t := time.Now()
		logf("== %s", name)
		if err := fn(); err != nil {
			r.Errors = append(r.Errors, name+": "+err.Error())
			logf("%s failed: %v", name, err)
		}
		logf("== %s took %s", name, time.Since(t).Round(time.Second))
	}
	step("wg-throughput", func() error { return wgThroughput(ctx, &s, r) })
	// One 3-node mesh serves cost, throughput, NATS and failure (in that
	// order: idle first, the kill last); its start-up is also the first
	// 3-node time-to-mesh sample.
	mainPhases := []string{"cost", "lab-throughput", "nats", "failure"}
	needMain := false
	for _, p := range mainPhases {
		needMain = needMain || !s.skip[p]
	}
	var m3 []meshTiming
	if needMain && ctx.Err() == nil {
		err := withLab(ctx, &s, 3, func(l *benchLab, t meshTiming) error {
			m3 = append(m3, t)
			step("cost", func() error { return idleCost(ctx, &s, r, l) })
			step("lab-throughput", func() error { return labThroughput(ctx, &s, r, l) })
			step("nats", func() error { return natsBench(ctx, &s, r, l) })
			step("failure", func() error { return failureDetection(ctx, &s, r, l) })
			return nil
		})
		if err != nil {
			r.Errors = append(r.Errors, "3-node mesh: "+err.Error())
			logf("3-node mesh failed: %v", err)
		}
	}
	step("mesh", func() error { return timeToMesh(ctx, &s, r, m3) })
	step("scale", func() error { return scaleBench(ctx, &s, r) })
	if s.binSize > 0 {
		f := r.add(fig("cost", "binary size (static, -trimpath -s -w)", "MB", []float64{float64(s.binSize) / 1e6}))
		f.Note = "CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" ./cmd/meshnode"
	}

	r.Finished = time.Now().UTC()
	r.Machine["load_end"] = loadavg()
	orderFigures(r)
	fmt.Println()
	r.Print(os.Stdout)
	if err := os.MkdirAll(filepath.Dir(s.out), 0o755); err != nil {
		return err
	}
	if err := r.Write(s.out); err != nil {
		return err
	}
	if s.markdown != "" {
		f, err := os.Create(s.markdown)
		if err != nil {
			return err
		}
		r.PrintMarkdown(f)
		f.Close()
	}
	fmt.Printf("\nreport: %s (load %s at start, %s at end; took %s)\n", s.out, r.Machine["load_start"], r.Machine["load_end"], r.Finished.Sub(r.Started).Round(time.Second))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// orderFigures sorts figures by group in the order, stable inside
// a group.
func orderFigures(r *Report) {
	order := map[string]int{"throughput": 0, "nats": 1, "mesh": 2, "failure": 3, "cost": 4, "scale": 5}
	var out []*Figure
	for g := 0; g < len(order); g++ {
		for _, f := range r.Figures {
			if order[f.Group] == g {
				out = append(out, f)
			}
		}
	}
	for _, f := range r.Figures {
		if _, ok := order[f.Group]; !ok {
			out = append(out, f)
		}
	}
	r.Figures = out
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func sh(name string, args ...string) string {
	out, _ := exec.Command(name, args...).Output()
	return strings.TrimSpace(string(out))
}

func machine() map[string]string {
	m := map[string]string{
		"nproc":      sh("nproc"),
		"kernel":     sh("uname", "-sr"),
		"load_start": loadavg(),
		"go":         sh("go", "version"),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m["cpu"] = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	for _, l := range strings.Split(sh("free", "-h"), "\n") {
		if strings.HasPrefix(l, "Mem:") {
			m["memory"] = strings.Join(strings.Fields(l)[1:2], "") + " total"
		}
	}
	return m
}
