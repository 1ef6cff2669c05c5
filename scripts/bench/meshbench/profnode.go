package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
)

// runProfNode is `meshbench profnode REAL_MESHNODE ARGS...`: a stand-in
// for the meshnode binary in a lab (PROFILE=1). `up` runs mesh.Node in
// this process exactly as `meshnode up` does, and on SIGUSR1 writes a heap
// profile (after a GC) and on SIGUSR2 a 20 s CPU profile next to the
// node's state directory; every other subcommand runs the real binary.
func runProfNode(args []string) error {
	if len(args) < 2 || args[1] != "up" {
		if len(args) == 0 {
			return fmt.Errorf("usage: meshbench profnode MESHNODE ARGS...")
		}
		// Become the real binary: same PID, so the lab's signals (SIGTERM
		// for a clean shutdown, SIGKILL for a crash) reach meshnode itself.
		bin, err := exec.LookPath(args[0])
		if err != nil {
			return err
		}
		return syscall.Exec(bin, args, os.Environ())
	}
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	state := fs.String("state", "", "")
	iface := fs.String("iface", "", "")
	var eps []string
	fs.Func("endpoint", "", func(s string) error { eps = append(eps, s); return nil })
	enroll := fs.String("enroll-addr", "", "")
	fast := fs.Bool("fast-timers", false, "")
	expect := fs.Int("bootstrap-expect", 0, "")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	cfg, err := mesh.LoadConfig(identity.StateDir(*state))
	if err != nil {
		return err
	}
	cfg.Interface, cfg.EnrollAddr, cfg.FastTimers = *iface, *enroll, *fast
	if len(eps) > 0 {
		cfg.Endpoints = eps
	}
	if *expect > 0 {
		cfg.BootstrapExpect = *expect
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	mesh.TuneRuntimeForDaemon() // as meshnode up does, so the heap profile is the daemon's
	n, err := mesh.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for s := range sig {
			base := *state + "-" + time.Now().Format("150405")
			switch s {
			case syscall.SIGUSR1:
				runtime.GC()
				f, err := os.Create(base + ".heap.pprof")
				if err == nil {
					pprof.WriteHeapProfile(f)
					f.Close()
				}
			case syscall.SIGUSR2:
				f, err := os.Create(base + ".cpu.pprof")
				if err == nil && pprof.StartCPUProfile(f) == nil {
					time.Sleep(20 * time.Second)
					pprof.StopCPUProfile()
					f.Close()
				}
			}
		}
	}()
	return n.Run(ctx)
}
