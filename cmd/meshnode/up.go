package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/meshnode/meshnode/mesh"
)

func runUp(ctx context.Context, args []string) error {
	fs := newFlagSet("up", "[--state DIR] [flags]")
	nf := addNodeFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	cfg, err := nf.config()
	if err != nil {
		return err
	}
	return runNode(ctx, cfg)
}

// runNode runs an enrolled node until ctx ends (SIGTERM/SIGINT) or it is
// asked to leave, telling systemd when it is ready.
func runNode(ctx context.Context, cfg mesh.Config) error {
	log := newLogger(cfg.LogLevel)
	mesh.TuneRuntimeForDaemon()
	n, err := mesh.New(cfg, log)
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-n.Ready():
			// Readiness for systemd (Type=notify); a no-op elsewhere.
			daemon.SdNotify(false, daemon.SdNotifyReady)
			fmt.Fprintf(os.Stderr, "meshnode: %s ready at %s\n", n.Name(), n.Addr())
		case <-ctx.Done():
		}
	}()
	err = n.Run(ctx)
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	return err
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
