package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/meshnode/meshnode/image/build"
	"github.com/meshnode/meshnode/image/config"
	"github.com/meshnode/meshnode/image/disk"
)

func runImage(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: meshnode image build [flags] | meshnode image configure [flags]")
		return flag.ErrHelp
	}
	switch args[0] {
	case "build":
		return imageBuild(ctx, args[1:])
	case "configure":
		return imageConfigure(args[1:])
	}
	return fmt.Errorf("unknown image subcommand %q (want build or configure)", args[0])
}

func imageBuild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	out := fs.String("o", "out/disk.img", "disk image to write (vmlinuz, initrd.img, manifest.json and the update bundle update/ go beside it)")
	initBin := fs.String("init", "", "static meshnode binary to use as /init (default: this binary)")
	src := fs.String("kernel", "auto", "kernel source: auto (Debian, gokrazy as fallback), debian or gokrazy")
	cache := fs.String("cache", "", "download cache (default: <dir of -o>/cache)")
	cmdline := fs.String("cmdline", "", "extra kernel arguments for both slots (e.g. meshnode.debug=1)")
	sizeMiB := fs.Int64("size", disk.DefaultLayout.Size/disk.MiB, "image size in MiB")
	espMiB := fs.Int64("esp-size", disk.DefaultLayout.ESPSize/disk.MiB, "ESP size in MiB")
	gen := fs.Uint64("generation", 0, "update generation of this release: boxes install only a higher one (default: SOURCE_DATE_EPOCH, else now)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *initBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("--init not given and own path unknown: %w", err)
		}
		*initBin = exe
	}
	var epoch int64
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		epoch = v
	}
	_, err := build.Build(ctx, build.Options{
		Out: *out, CacheDir: *cache, Init: *initBin, KernelSource: *src, Cmdline: *cmdline,
		Layout:  disk.Layout{Size: *sizeMiB * disk.MiB, ESPSize: *espMiB * disk.MiB},
		Version: version, Epoch: epoch, Generation: *gen,
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	return err
}

func imageConfigure(args []string) error {
	fs := flag.NewFlagSet("image configure", flag.ContinueOnError)
	img := fs.String("image", "", "disk image file to configure")
	dev := fs.String("disk", "", "block device holding a flashed image (must not be mounted)")
	var c config.Config
	fs.StringVar(&c.Name, "name", "", "node name")
	fs.StringVar(&c.Join, "join", "", "enrollment endpoint of an existing member (host or host:port)")
	fs.StringVar(&c.Token, "token", "", "one-time join token (from meshnode invite)")
	fs.StringVar(&c.Network.Interface, "interface", "", "network interface (default: first with a link)")
	fs.StringVar(&c.Network.Address, "static-ip", "", "static address in CIDR form; DHCP is then off")
	fs.StringVar(&c.Network.Gateway, "gateway", "", "default gateway for --static-ip")
	dns := fs.String("dns", "", "comma-separated DNS servers for --static-ip")
	fallback := fs.Bool("dhcp-fallback", false, "with --static-ip: try DHCP first, use the static address only if it fails")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	target := *img
	if (*img == "") == (*dev == "") {
		return errors.New("give exactly one of --image FILE or --disk DEVICE")
	}
	if *dev != "" {
		target = *dev
		st, err := os.Stat(*dev)
		if err != nil {
			return err
		}
		if st.Mode()&os.ModeDevice == 0 {
			return fmt.Errorf("--disk %s is not a block device (use --image for a file)", *dev)
		}
	}
	if c.Name == "" || c.Join == "" || c.Token == "" {
		return errors.New("--name, --join and --token are required")
	}
	if *dns != "" {
		c.Network.DNS = strings.Split(*dns, ",")
	}
	if c.Network.Address != "" && !*fallback {
		f := false
		c.Network.DHCP = &f
	}
	data, err := config.Encode(c)
	if err != nil {
		return err
	}
	esp, err := disk.OpenESP(target, true)
	if err != nil {
		return err
	}
	if err := esp.WriteFile(config.Path, data); err != nil {
		esp.Close()
		return err
	}
	if err := esp.Close(); err != nil {
		return fmt.Errorf("%s: %w", target, err)
	}
	fmt.Printf("%s: wrote %s (name %s, join %s)\n", target, config.Path, c.Name, c.Join)
	return nil
}
