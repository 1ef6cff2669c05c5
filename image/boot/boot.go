// Package boot is what meshnode does as PID 1 on the appliance: mount the
// kernel filesystems, load the modules listed in the initramfs in order,
// find the meshnode-boot and meshnode-perm partitions by GPT name, mount
// them (formatting perm only when it is blank), read the first-boot config,
// restore the clock, bring up the underlay network, and hand over to a
// NodeRunner that runs the node.
//
// PID 1 must never exit and never hang silently: configuration problems
// are printed and retried; anything it cannot recover from is printed and
// the box reboots after a delay. It never formats a partition that holds
// data.
package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/image/config"
	"github.com/meshnode/meshnode/image/update"
	"golang.org/x/sys/unix"
)

// Where PID 1 mounts things.
const (
	BootMount = "/boot"          // the ESP
	PermMount = "/perm"          // the persistent partition
	StateDir  = "/perm/meshnode" // the node's state directory on perm
)

// Stable console lines (tests and operators grep for them).
const (
	ReadyPrefix     = "meshnode: ready"       // + " name=N overlay=A"
	InitReadyPrefix = "meshnode: init: ready" // PID 1 done, node starting
	ConfigErrPrefix = "meshnode: config error:"
	FatalPrefix     = "meshnode: fatal:"
)

// BootConfig is what the node runner gets from PID 1.
type BootConfig struct {
	Config    config.Config // name, join peer, token, network (token empty after the first join)
	StateDir  string        // on the perm partition
	FirstBoot bool          // the state directory holds no enrollment (no ticket): join with the token
	Slot      string        // "a" or "b"
	Underlay  netip.Prefix  // address configured on Interface
	Interface string

	// Ready must be called once the node is up: it prints the ready line
	// and marks the boot slot good, unless the slot is on trial for an
	// update (Update.Kind() == update.BootTrial): then the update agent
	// blesses it once the node is healthy, or fails it.
	Ready func(name, overlay string)
	// Update is the box's A/B update state (nil when it could not be
	// read: the box then takes no update this boot).
	Update *update.Box
	// ConsumeToken must be called after a successful join: it removes the
	// token from config.toml on the ESP so it is never used twice.
	ConsumeToken func() error
}

// NodeRunner runs the node until ctx ends. An error is printed and the
// runner is called again after a backoff (a join that fails because the
// peer is unreachable is retried); an error wrapping ErrFatal reboots.
type NodeRunner func(ctx context.Context, boot BootConfig) error

// ErrFatal marks an error retrying cannot fix.
var ErrFatal = errors.New("fatal")

// ErrConfig marks an error the operator must fix in config.toml.
var ErrConfig = errors.New("config")

// Timings, variables so tests of the pieces can shorten them.
var (
	PartitionWait  = 60 * time.Second // slow USB and NVMe disks
	ConfigRetry    = 5 * time.Second
	FatalDelay     = 30 * time.Second
	RunnerBackoff  = []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second}
	ClockSaveEvery = 5 * time.Minute
)

// console is where PID 1 writes: the kernel's /dev/console (stdout). A
// variable so that tests can read what would be printed.
var console io.Writer = os.Stdout

func say(format string, args ...any) {
	fmt.Fprintf(console, format+"\n", args...)
}

// Main is PID 1. It never returns.
func Main(run NodeRunner) {
	defer func() {
		if r := recover(); r != nil {
			fatal(fmt.Errorf("panic: %v", r))
		}
	}()
	// The Go runtime exits on an unhandled SIGINT/SIGTERM/SIGHUP, and PID 1
	// exiting panics the kernel: nothing may stop the appliance that way.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	slog.SetDefault(slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err := mountEarly(); err != nil {
		fatal(err)
	}
	say("meshnode: init: starting (uptime %s)", uptime())
	cmdline := readCmdline()
	p, err := prepare(cmdline)
	if err != nil {
		fatal(err)
	}
	bc := p.bootConfig()
	say("%s name=%s slot=%s first_boot=%t uptime=%s", InitReadyPrefix, bc.Config.Name, bc.Slot, bc.FirstBoot, uptime())
	runLoop(context.Background(), run, bc)
}

// prepared is the state PID 1 builds before handing over.
type prepared struct {
	cmdline   string
	slot      string
	bootDev   string
	permDev   string
	cfg       config.Config
	firstBoot bool
	net       netResult
	update    *update.Box
	mu        sync.Mutex
	readyOnce sync.Once
}

func prepare(cmdline string) (*prepared, error) {
	p := &prepared{cmdline: cmdline, slot: cmdlineValue(cmdline, "meshnode.slot")}
	n, failed := loadModules("/lib/modules")
	say("meshnode: init: modules loaded=%d failed=%d", n, failed)
	startWatchdog()
	if _, err := os.Stat("/sys/firmware/efi"); err == nil { // booted by UEFI
		mountOptional("efivarfs", "/sys/firmware/efi/efivars", "efivarfs", 0)
	}

	parts, err := findPartitions("/sys/class/block", PartitionWait, map[string]bool{"meshnode-boot": true, "meshnode-perm": true})
	if err != nil {
		return nil, err
	}
	p.bootDev, p.permDev = "/dev/"+parts["meshnode-boot"], "/dev/"+parts["meshnode-perm"]
	say("meshnode: init: partitions boot=%s perm=%s", p.bootDev, p.permDev)

	formatted, err := mountPerm(p.permDev, PermMount)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", StateDir, err)
	}
	ents, err := os.ReadDir(StateDir)
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", StateDir, err)
	}
	p.firstBoot = !enrolled(StateDir)
	say("meshnode: init: perm mounted at %s (formatted=%t, state entries=%d)", PermMount, formatted, len(ents))

	restoreClock(PermMount)
	go saveClockLoop(PermMount)

	if err := mount(p.bootDev, BootMount, "vfat", 0, "fmask=0077,dmask=0077"); err != nil {
		return nil, err
	}
	p.openUpdate()
	p.cfg = p.readConfigUntilValid(filepath.Join(BootMount, config.Path))
	if !p.firstBoot && p.cfg.Token != "" {
		// Enrolled, yet config.toml still holds the token: power was cut
		// between the join and its removal, or an older version's line
		// edit missed it. It is spent; it must not stay readable.
		say("meshnode: init: this box is enrolled but config.toml still has a join token: removing it")
		_ = p.consumeToken() // says why on failure
		p.cfg.Token = ""     // never joins again, removed or not
	}
	say("meshnode: init: config name=%s join=%s token_set=%t first_boot=%t", p.cfg.Name, p.cfg.Join, p.cfg.Token != "", p.firstBoot)

	p.net = bringUpNetwork(p.cfg.Network)
	return p, nil
}

// readConfigUntilValid reads config.toml (plus kernel arguments). Before
// the box is enrolled it retries, printing why, until the config is usable:
// a broken config must never lead to a reboot loop or a wiped disk, only
// to a clear message. An enrolled box needs nothing from config.toml (its
// identity and mesh are on perm), so there a config error is printed and
// the box comes up anyway: a bad edit of the ESP, or a file an older
// version mangled while removing the token, must not keep a member of the
// mesh down.
func (p *prepared) readConfigUntilValid(path string) config.Config {
	for {
		c, err := readConfig(path, p.cmdline, p.firstBoot)
		if err == nil {
			return c
		}
		if !p.firstBoot {
			say("%s %v (this box is enrolled: coming up from %s anyway)", ConfigErrPrefix, err, StateDir)
			return fallbackConfig(path, p.cmdline)
		}
		say("%s %v (retrying in %s)", ConfigErrPrefix, err, ConfigRetry)
		time.Sleep(ConfigRetry)
	}
}

// readConfig reads config.toml at path and overlays the kernel arguments.
// Before enrollment it also insists on what the join needs.
func readConfig(path, cmdline string, firstBoot bool) (config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return config.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	c, err := config.Parse(path, data)
	if err != nil {
		return config.Config{}, err
	}
	if err := c.ApplyCmdline(cmdline); err != nil {
		return config.Config{}, err
	}
	if firstBoot && (c.Join == "" || c.Token == "") {
		return config.Config{}, fmt.Errorf("%s: first boot needs join and token (run: meshnode image configure --image IMG --name NAME --join PEER --token TOKEN)", path)
	}
	if c.Name == "" && firstBoot {
		return config.Config{}, fmt.Errorf("%s: first boot needs a name", path)
	}
	return c, nil
}

// fallbackConfig is the config of an enrolled box whose config.toml or
// kernel arguments were refused: whichever of the two is usable on its own
// (a meshnode.token= argument left out, it is refused in any case), else
// nothing, which means DHCP on the first Ethernet interface. The token
// read from a usable file is kept so that PID 1 can remove it.
func fallbackConfig(path, cmdline string) config.Config {
	var c config.Config
	file := "ignored"
	if data, err := os.ReadFile(path); err == nil {
		if fc, err := config.Parse(path, data); err == nil {
			c, file = fc, "used"
		}
	}
	args := "used"
	withArgs := c
	if err := withArgs.ApplyCmdline(dropCmdlineKey(cmdline, "meshnode.token")); err == nil {
		c = withArgs
	} else {
		args = fmt.Sprintf("ignored (%v)", err)
	}
	say("meshnode: init: enrolled box: %s %s, kernel arguments %s", path, file, args)
	return c
}

// dropCmdlineKey returns cmdline without its key=... arguments.
func dropCmdlineKey(cmdline, key string) string {
	var keep []string
	for _, f := range strings.Fields(cmdline) {
		if k, _, _ := strings.Cut(f, "="); k != key {
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}

// enrolled reports whether the state directory holds an enrollment. The
// node writes its ticket last when it is admitted
// (identity.StateDir.SaveEnrollment), so a seed or other files without
// it (a join cut short) still need the token.
func enrolled(stateDir string) bool {
	_, err := os.Lstat(identity.StateDir(stateDir).TicketPath())
	return err == nil
}

func (p *prepared) bootConfig() BootConfig {
	return BootConfig{
		Config: p.cfg, StateDir: StateDir, FirstBoot: p.firstBoot, Slot: p.slot,
		Underlay: p.net.addr, Interface: p.net.iface,
		Ready:        p.ready,
		ConsumeToken: p.consumeToken,
		Update:       p.update,
	}
}

func (p *prepared) ready(name, overlay string) {
	p.readyOnce.Do(func() {
		say("%s name=%s overlay=%s uptime=%s", ReadyPrefix, name, overlay, uptime())
		if p.update == nil {
			if err := blessSlot(filepath.Join(BootMount, "loader/entries"), p.slot); err != nil {
				say("meshnode: init: cannot mark slot %s good: %v", p.slot, err)
			}
			return
		}
		if p.update.Kind() == update.BootTrial {
			say("meshnode: init: slot %s is on trial: it is marked good only once the node is healthy", p.slot)
			return
		}
		if renamed, err := p.update.Bless(time.Now()); err != nil {
			say("meshnode: init: cannot mark slot %s good: %v", p.slot, err)
		} else if renamed {
			say("meshnode: init: slot %s marked good", p.slot)
		}
	})
}

func (p *prepared) consumeToken() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	path := filepath.Join(BootMount, config.Path)
	removed, err := removeToken(path, time.Now())
	if err != nil {
		// Loud: a token left on the ESP is readable by anyone holding the
		// disk (it is spent, but the operator must know).
		say("meshnode: init: JOIN TOKEN NOT REMOVED: %v", err)
		return err
	}
	p.cfg.Token = ""
	if removed {
		say("meshnode: init: join token removed from %s", path)
	}
	return nil
}

// removeToken rewrites the config.toml at path without its join token
// (config.RemoveToken), atomically and durably, then reads the file back
// and proves the token is gone (config.CheckNoToken). It reports whether
// there was a token to remove.
func removeToken(path string, now time.Time) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	out, tokens, err := config.RemoveToken(path, data, now)
	if err != nil {
		return false, err
	}
	if bytes.Equal(out, data) {
		return false, nil
	}
	// FAT does not clear the clusters of a replaced file, so after the
	// rename the token would still be on the disk for anyone who reads its
	// raw blocks. The old file is held open across the rename and then
	// overwritten through that descriptor: its clusters stay allocated to
	// it until the last close. The replacement itself stays atomic; a power
	// cut before the scrub leaves only what there was without it.
	old, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	defer old.Close()
	if err := writeFileSync(path, out, 0o600); err != nil {
		return false, fmt.Errorf("%s: writing it without the token: %w", path, err)
	}
	if err := scrub(old, len(data)); err != nil {
		// The file no longer has the token; only its old blocks may.
		say("meshnode: init: %s: could not clear the replaced file's blocks on the disk: %v", path, err)
	}
	back, err := readBack(path)
	if err != nil {
		return false, fmt.Errorf("%s: reading it back after removing the token: %w", path, err)
	}
	if err := config.CheckNoToken(path, back, tokens); err != nil {
		return false, err
	}
	return true, nil
}

// scrub overwrites the first n bytes of f with zeros and syncs them to
// the disk.
func scrub(f *os.File, n int) error {
	if _, err := f.WriteAt(make([]byte, n), 0); err != nil {
		return err
	}
	return f.Sync()
}

// readBack reads path after asking the kernel to drop its cached pages, so
// that (as far as a clean page cache allows) the check sees what reached
// the disk rather than what was just written into memory.
func readBack(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) // best effort: a hint
	return io.ReadAll(f)
}

// runLoop calls run until it succeeds (returns nil: the node stopped on
// purpose, so reboot) or fails fatally; other errors are retried with backoff.
func runLoop(ctx context.Context, run NodeRunner, bc BootConfig) {
	for attempt := 0; ; attempt++ {
		err := run(ctx, bc)
		switch {
		case err == nil:
			say("meshnode: node stopped; rebooting")
			reboot()
		case errors.Is(err, ErrFatal):
			fatal(err)
		}
		d := RunnerBackoff[min(attempt, len(RunnerBackoff)-1)]
		if errors.Is(err, ErrConfig) {
			say("%s %v (retrying in %s)", ConfigErrPrefix, err, d)
		} else {
			say("meshnode: node: %v (retrying in %s)", err, d)
		}
		time.Sleep(d)
		// A later run must not join again: once the node is enrolled the
		// runner is told so.
		if bc.FirstBoot && enrolled(bc.StateDir) {
			bc.FirstBoot = false
		}
	}
}

// fatal prints err, waits FatalDelay so it can be read, and reboots.
func fatal(err error) {
	say("%s %v (rebooting in %s)", FatalPrefix, err, FatalDelay)
	time.Sleep(FatalDelay)
	reboot()
}

func reboot() {
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	// Reboot only fails without CAP_SYS_BOOT; PID 1 must still not return.
	for {
		time.Sleep(time.Hour)
	}
}

func readCmdline() string {
	b, _ := os.ReadFile("/proc/cmdline")
	return strings.TrimSpace(string(b))
}

func cmdlineValue(cmdline, key string) string {
	for _, f := range strings.Fields(cmdline) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0] + "s"
}

// writeFileSync replaces path atomically and durably (the ESP is FAT: the
// rename is as atomic as FAT allows, and the sync makes it stick before a
// power cut).
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncFS(filepath.Dir(path))
}

// syncFS flushes the whole filesystem holding dir. On the ESP (vfat) an
// fsync of the file and its directory is not enough: the FAT itself can
// stay dirty in memory and a power cut then loses the new file.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// blessSlot renames the slot's boot-counting entry (meshnode-a+2-1.conf) to
// its plain name, telling systemd-boot the slot is good.
func blessSlot(entries, slot string) error {
	if slot == "" {
		return errors.New("no meshnode.slot on the kernel command line")
	}
	m, _ := filepath.Glob(filepath.Join(entries, "meshnode-"+slot+"+*.conf"))
	if len(m) == 0 {
		return nil // already blessed
	}
	if err := os.Rename(m[0], filepath.Join(entries, "meshnode-"+slot+".conf")); err != nil {
		return err
	}
	if err := syncFS(entries); err != nil {
		return err
	}
	say("meshnode: init: slot %s marked good", slot)
	return nil
}
