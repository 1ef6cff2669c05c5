// Package build is the appliance image builder: it fetches the kernel, picks
// and orders the modules PID 1 needs, writes a reproducible initramfs around
// the static meshnode binary, lays out the GPT disk (ESP with systemd-boot
// and slots a/b, ext4 perm) and records a manifest with the version and
// sha256 of every part. Beside the disk image it writes the update bundle of
// the same release (image/update): what `meshnode update publish` sends to
// boxes already in the field.
package build

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/image/config"
	"github.com/meshnode/meshnode/image/disk"
	"github.com/meshnode/meshnode/image/initramfs"
	"github.com/meshnode/meshnode/image/kernel"
	"github.com/meshnode/meshnode/image/kmod"
	"github.com/meshnode/meshnode/image/update"
)

// DefaultModules are what an x86_64 edge box (or a q35 VM) needs before the
// node can run: TUN for the WireGuard interface; virtio, SATA, NVMe and USB
// storage to find the partitions; common NICs; ext4 for perm; vfat with its
// code pages for the ESP; efivarfs for the boot loader's variables. Names the
// kernel has built in are skipped; dependencies are added from .modinfo.
var DefaultModules = []string{
	"tun",
	"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "virtio_rng",
	"e1000", "e1000e", "igb", "igc", "r8169",
	"ahci", "sd_mod", "nvme", "xhci_pci", "ehci_pci", "usb_storage", "uas",
	"ext4", "crc32c_generic",
	"vfat", "nls_cp437", "nls_iso8859_1", "nls_ascii", "nls_utf8",
	"efivarfs",
}

// SystemdBootEFI is where Debian's systemd-boot-efi package puts the loader.
const (
	SystemdBootEFI     = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	SystemdBootPackage = "systemd-boot-efi"
)

// BootTries is how many times systemd-boot tries a fresh slot before it
// falls back to the other one.
const BootTries = update.Tries

// Arch is the architecture the builder makes images for (GOARCH names, as
// update manifests carry them).
const Arch = "amd64"

// BundleDir is the update bundle's directory name beside the disk image.
const BundleDir = "update"

// Options configures a build.
type Options struct {
	Out          string // the disk image to write, e.g. out/disk.img; parts go beside it
	CacheDir     string // downloads kept between builds
	Init         string // path of the static meshnode binary that becomes /init
	KernelSource string // "auto" (Debian, gokrazy fallback), "debian" or "gokrazy"
	Modules      []string
	Layout       disk.Layout
	Cmdline      string // extra kernel arguments for both slots
	Version      string // meshnode version recorded in the manifest and entries
	// Generation orders releases for updates: a box installs only a
	// generation above the one it runs. 0 means Epoch, so that builds of
	// later sources get higher generations.
	Generation uint64
	Epoch      int64 // SOURCE_DATE_EPOCH: timestamps inside the image
	Log        *slog.Logger
}

// Part is one file of the image with its checksum.
type Part struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	Version string `json:"version,omitempty"`
	Source  string `json:"source,omitempty"`
}

// Manifest describes a built image.
type Manifest struct {
	Format     int       `json:"format"`
	Version    string    `json:"version"`
	Generation uint64    `json:"generation"`
	Epoch      int64     `json:"source_date_epoch"`
	Kernel     KernelRef `json:"kernel"`
	Bootloader Part      `json:"bootloader"`
	Init       Part      `json:"init"`
	Modules    []Part    `json:"modules"`
	Initramfs  Part      `json:"initramfs"`
	ESP        []Part    `json:"esp"`
	Image      Part      `json:"image"`
	Cmdline    string    `json:"cmdline"`
	Update     []Part    `json:"update_bundle"` // unsigned until an admin signs it
	BuildSecs  float64   `json:"build_seconds"`
}

// KernelRef records where the kernel came from.
type KernelRef struct {
	Source        string `json:"source"`
	Package       string `json:"package"`
	Version       string `json:"version"`
	Release       string `json:"release"`
	PackageSHA256 string `json:"package_sha256"`
	Vmlinuz       Part   `json:"vmlinuz"`
}

// Build produces the image, its parts and manifest.json next to o.Out.
func Build(ctx context.Context, o Options) (*Manifest, error) {
	start := time.Now()
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Out == "" {
		return nil, errors.New("build: no output path")
	}
	if o.Modules == nil {
		o.Modules = DefaultModules
	}
	if o.Layout == (disk.Layout{}) {
		o.Layout = disk.DefaultLayout
	}
	if o.Epoch == 0 {
		o.Epoch = time.Now().Unix()
		o.Log.Warn("SOURCE_DATE_EPOCH not set: the image is not reproducible", "epoch", o.Epoch)
	}
	if o.CacheDir == "" {
		o.CacheDir = filepath.Join(filepath.Dir(o.Out), "cache")
	}
	if o.Generation == 0 {
		o.Generation = uint64(o.Epoch)
	}
	outDir := filepath.Dir(o.Out)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}

	initBin, err := os.ReadFile(o.Init)
	if err != nil {
		return nil, fmt.Errorf("init binary: %w", err)
	}
	if err := CheckStatic(o.Init, initBin); err != nil {
		return nil, err
	}
	efi, bootVer, err := systemdBoot(ctx)
	if err != nil {
		return nil, err
	}

	k, err := kernel.Fetch(ctx, o.KernelSource, kernel.Options{CacheDir: o.CacheDir, Log: o.Log})
	if err != nil {
		return nil, err
	}
	vmlinuz, err := os.ReadFile(k.Vmlinuz)
	if err != nil {
		return nil, err
	}
	var mods []kmod.Module
	if k.ModulesDir != "" {
		mods, err = kmod.Select(k.ModulesDir, o.Modules, k.Builtin)
		if err != nil {
			return nil, err
		}
	}
	o.Log.Info("modules selected", "count", len(mods), "release", k.Release)

	m := &Manifest{Format: 1, Version: o.Version, Generation: o.Generation, Epoch: o.Epoch,
		Kernel: KernelRef{Source: k.Source, Package: k.Package, Version: k.Version, Release: k.Release, PackageSHA256: k.SHA256,
			Vmlinuz: part("vmlinuz", vmlinuz)},
		Bootloader: part("EFI/BOOT/BOOTX64.EFI", efi),
		Init:       part("init", initBin),
	}
	m.Bootloader.Version, m.Bootloader.Source = bootVer, SystemdBootPackage
	m.Init.Version = o.Version
	var files []initramfs.File
	for _, mod := range mods {
		files = append(files, initramfs.File{Path: mod.File, Data: mod.Data})
		m.Modules = append(m.Modules, part(initramfs.ModulesDir+"/"+filepath.Base(mod.File), mod.Data))
	}
	// PID 1 reads version and generation to know what the slot runs.
	buildInfo, _ := json.Marshal(map[string]any{"version": o.Version, "generation": o.Generation, "kernel": k.Release, "epoch": o.Epoch})
	t0 := time.Now()
	initrd, err := initramfs.Bytes(initramfs.Spec{
		Init: initBin, Modules: files, MTime: uint64(o.Epoch),
		Extra: []initramfs.File{{Path: initramfs.InfoFile, Data: append(buildInfo, '\n'), Mode: 0o644}},
	})
	if err != nil {
		return nil, err
	}
	m.Initramfs = part("initrd.img", initrd)
	o.Log.Info("initramfs written", "bytes", len(initrd), "seconds", time.Since(t0).Round(10*time.Millisecond).Seconds())

	m.Cmdline = strings.TrimSpace("console=tty0 console=ttyS0,115200 panic=10 " + o.Cmdline)
	bundle, err := update.NewBundle(o.Generation, Arch, o.Version, map[string][]byte{
		update.FileKernel: vmlinuz, update.FileInitramfs: initrd, update.FileCmdline: []byte(m.Cmdline + "\n"),
	})
	if err != nil {
		return nil, err
	}
	esp := ESPFiles(efi, vmlinuz, initrd, m.Cmdline, o.Version)
	for _, f := range esp {
		m.ESP = append(m.ESP, part(f.Path, f.Data))
	}

	tmp := o.Out + ".tmp"
	t0 = time.Now()
	if err := disk.Create(tmp, o.Layout, "meshnode "+o.Version+" "+strconv.FormatInt(o.Epoch, 10), esp); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	o.Log.Info("disk laid out", "seconds", time.Since(t0).Round(10*time.Millisecond).Seconds())
	sum, size, err := fileSum(tmp)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, o.Out); err != nil {
		return nil, err
	}
	m.Image = Part{Path: filepath.Base(o.Out), Size: size, SHA256: sum}
	for name, data := range map[string][]byte{"vmlinuz": vmlinuz, "initrd.img": initrd} {
		if err := identity.WriteFileAtomic(filepath.Join(outDir, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	bdir := filepath.Join(outDir, BundleDir)
	if err := bundle.Write(bdir); err != nil {
		return nil, err
	}
	m.Update = []Part{part(BundleDir+"/"+update.ManifestFile, bundle.Manifest.Marshal())}
	for _, f := range bundle.Manifest.Files {
		m.Update = append(m.Update, Part{Path: BundleDir + "/" + f.Name, Size: int64(f.Size), SHA256: f.Hex()})
	}
	o.Log.Info("update bundle written", "dir", bdir, "generation", o.Generation, "bytes", bundle.Manifest.TotalSize(),
		"next", "sign and send it from an admin node: meshnode update publish "+bdir)
	m.BuildSecs = time.Since(start).Round(10 * time.Millisecond).Seconds()
	mj, _ := json.MarshalIndent(m, "", "  ")
	if err := identity.WriteFileAtomic(filepath.Join(outDir, "manifest.json"), append(mj, '\n'), 0o644); err != nil {
		return nil, err
	}
	o.Log.Info("image built", "image", o.Out, "size", size, "initramfs", len(initrd), "kernel", k.Package+" "+k.Version, "seconds", m.BuildSecs)
	return m, nil
}

// ESPFiles is the content of a fresh ESP: systemd-boot, loader.conf whose
// default matches both slots, one BLS entry per slot (slot a preferred and
// under boot counting, slot b the blessed fallback), the kernel and
// initramfs in each slot, and the commented first-boot config.
func ESPFiles(efi, vmlinuz, initrd []byte, cmdline, version string) []disk.File {
	// systemd-boot sorts entries with a sort-key by version, highest first,
	// and puts entries with no tries left last; "default meshnode-*" then
	// picks the best slot that is not known bad.
	entry := func(slot string, gen int) []byte { return update.EntryText(slot, gen, version, cmdline) }
	return []disk.File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: efi},
		{Path: "loader/loader.conf", Data: []byte("default meshnode-*\ntimeout 0\neditor no\nconsole-mode keep\n")},
		{Path: fmt.Sprintf("loader/entries/meshnode-a+%d.conf", BootTries), Data: entry("a", 2)},
		{Path: "loader/entries/meshnode-b.conf", Data: entry("b", 1)},
		{Path: "meshnode/a/vmlinuz", Data: vmlinuz},
		{Path: "meshnode/a/initrd.img", Data: initrd},
		{Path: "meshnode/b/vmlinuz", Data: vmlinuz},
		{Path: "meshnode/b/initrd.img", Data: initrd},
		{Path: config.Path, Data: []byte(config.Template)},
	}
}

// CheckStatic refuses an init binary that needs a dynamic loader: the
// initramfs has no libc.
func CheckStatic(name string, data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("init binary %s: %w", name, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("init binary %s: built for %v, want x86_64", name, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("init binary %s is dynamically linked: build it with CGO_ENABLED=0", name)
		}
	}
	return nil
}

// systemdBoot reads the loader and checks it against dpkg's recorded md5sum.
func systemdBoot(ctx context.Context) ([]byte, string, error) {
	efi, err := os.ReadFile(SystemdBootEFI)
	if err != nil {
		return nil, "", fmt.Errorf("systemd-boot: %w (install the %s package)", err, SystemdBootPackage)
	}
	ver, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", SystemdBootPackage).Output()
	if err != nil {
		return nil, "", fmt.Errorf("dpkg-query %s: %w", SystemdBootPackage, err)
	}
	// Multi-arch packages keep their md5sums under name:arch.
	sums, err := os.ReadFile("/var/lib/dpkg/info/" + SystemdBootPackage + ":amd64.md5sums")
	if errors.Is(err, os.ErrNotExist) {
		sums, err = os.ReadFile("/var/lib/dpkg/info/" + SystemdBootPackage + ".md5sums")
	}
	if err != nil {
		return nil, "", fmt.Errorf("%s: no dpkg md5sums to check %s against: %w", SystemdBootPackage, SystemdBootEFI, err)
	}
	want := ""
	for _, l := range strings.Split(string(sums), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && "/"+f[1] == SystemdBootEFI {
			want = f[0]
		}
	}
	got := md5.Sum(efi)
	if want == "" || want != hex.EncodeToString(got[:]) {
		return nil, "", fmt.Errorf("%s does not match the md5sum recorded by dpkg for %s", SystemdBootEFI, SystemdBootPackage)
	}
	return efi, string(ver), nil
}

func part(p string, data []byte) Part {
	s := sha256.Sum256(data)
	return Part{Path: p, Size: int64(len(data)), SHA256: hex.EncodeToString(s[:])}
}

func fileSum(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
