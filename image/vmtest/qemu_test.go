package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshnode/meshnode/image/build"
	"github.com/meshnode/meshnode/image/config"
	"github.com/meshnode/meshnode/image/disk"
	"github.com/meshnode/meshnode/scripts/netns"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
)

// OVMF firmware from Debian's ovmf package.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// bootDeadline bounds one boot under TCG, firmware to ready line; measured
// boots take well under a minute, the margin is for a loaded CI machine.
const bootDeadline = 3 * time.Minute

// requireImageTools makes the test fatal in CI and a skip elsewhere when
// the builder's or qemu's packages are missing.
func requireImageTools(t *testing.T) {
	t.Helper()
	netnstest.RequireRoot(t)
	for _, tool := range []string{"qemu-system-x86_64", "apt-get", "apt-cache", "dpkg-deb", "dpkg-query"} {
		netnstest.RequireTool(t, tool)
	}
	for _, f := range []string{ovmfCode, ovmfVars, build.SystemdBootEFI} {
		if _, err := os.Stat(f); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("CI=true but %s is missing (packages ovmf, systemd-boot-efi)", f)
			}
			t.Skipf("skipping: %s missing", f)
		}
	}
}

// image is one built test image and the parts beside it.
type image struct {
	disk string // disk.img; tests boot copies of it
	dir  string // holds vmlinuz and initrd.img too
	man  *build.Manifest
}

var (
	imagesMu sync.Mutex
	images   = map[string]*image{} // by package path of /init
	imageErr = map[string]error{}
)

// testImage builds (once per test binary) an image with the stub /init
// (image/vmtest/stubinit) using the real builder.
func testImage(t *testing.T) *image { return builtImage(t, "./stubinit", "debian") }

// productImage is the same with the real meshnode binary as /init.
func productImage(t *testing.T) *image { return builtImage(t, "../../cmd/meshnode", "debian") }

func builtImage(t *testing.T, pkg, kernel string) *image {
	t.Helper()
	imagesMu.Lock()
	defer imagesMu.Unlock()
	key := pkg + " " + kernel
	if im, ok := images[key]; ok {
		return im
	}
	if err, ok := imageErr[key]; ok {
		t.Fatalf("building the image: %v", err)
	}
	im, err := buildImage(t, pkg, kernel)
	if err != nil {
		imageErr[key] = err
		t.Fatalf("building the image: %v", err)
	}
	images[key] = im
	return im
}

func buildImage(t *testing.T, pkg, kernel string) (*image, error) {
	dir, err := os.MkdirTemp("", "meshnode-vmtest-")
	if err != nil {
		return nil, err
	}
	imageDirs = append(imageDirs, dir)
	initBin := filepath.Join(dir, "init")
	start := time.Now()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", initBin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, &buildError{"go build " + pkg, err, out}
	}
	t.Logf("built %s in %s", pkg, time.Since(start).Round(100*time.Millisecond))
	cache := os.Getenv("MESHNODE_IMAGE_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "meshnode-image-cache")
	}
	start = time.Now()
	im := &image{disk: filepath.Join(dir, "disk.img"), dir: dir}
	im.man, err = build.Build(context.Background(), build.Options{
		Out: im.disk, CacheDir: cache, Init: initBin, KernelSource: kernel,
		// Generation 1: the update tests publish generation 2 and up.
		Version: "vmtest", Epoch: 1767225600, Generation: 1, // 2026-01-01
	})
	if err != nil {
		return nil, err
	}
	t.Logf("image built in %s: kernel %s %s, %d modules, initramfs %d bytes, image %d bytes",
		time.Since(start).Round(100*time.Millisecond), im.man.Kernel.Package, im.man.Kernel.Version,
		len(im.man.Modules), im.man.Initramfs.Size, im.man.Image.Size)
	return im, nil
}

// imageDirs are removed by TestMain after all tests.
var imageDirs []string

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range imageDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

type buildError struct {
	what string
	err  error
	out  []byte
}

func (e *buildError) Error() string { return e.what + ": " + e.err.Error() + ": " + string(e.out) }

// copyImage gives a test its own disk (sparse copy).
func copyImage(t *testing.T, im *image) string {
	t.Helper()
	src := im.disk
	dst := filepath.Join(t.TempDir(), "disk.img")
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy image: %v: %s", err, out)
	}
	return dst
}

func writeESP(t *testing.T, img, path string, data []byte) {
	t.Helper()
	e, err := disk.OpenESP(img, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.WriteFile(path, data); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

func readESP(t *testing.T, img, path string) string {
	t.Helper()
	e, err := disk.OpenESP(img, false)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	b, err := e.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func listESP(t *testing.T, img, dir string) []string {
	t.Helper()
	e, err := disk.OpenESP(img, false)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	n, err := e.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// vm is one qemu process with its serial console captured.
type vm struct {
	t       *testing.T
	cmd     *exec.Cmd
	started time.Time
	mu      sync.Mutex
	lines   []string
	next    int // first line not yet consumed by expect
	exited  chan struct{}
}

// boot starts qemu (q35, TCG, OVMF, the image on virtio-blk, user-mode
// networking without restrict=on so UDP works, nothing forwarded) inside a
// fresh network namespace so that nothing of it touches the host's network.
func boot(t *testing.T, img string) *vm {
	t.Helper()
	return startVM(t, img, nil)
}

// bootDirect skips the firmware and systemd-boot (covered by
// TestApplianceBoot) and hands qemu the slot's kernel and initramfs, which
// saves most of a TCG boot; PID 1 still works on the disk image.
func bootDirect(t *testing.T, im *image, img string, args ...string) *vm {
	t.Helper()
	return bootDirectQemu(t, im, img, nil, args...)
}

// bootDirectQemu is bootDirect with extra qemu arguments; a "-netdev" for
// id n0 among them replaces the default user-mode network.
func bootDirectQemu(t *testing.T, im *image, img string, qemu []string, args ...string) *vm {
	t.Helper()
	return startVM(t, img, append([]string{
		"-kernel", filepath.Join(im.dir, "vmlinuz"), "-initrd", filepath.Join(im.dir, "initrd.img"),
		"-append", strings.Join(append([]string{im.man.Cmdline, "meshnode.slot=a"}, args...), " "),
	}, qemu...))
}

func startVM(t *testing.T, img string, extra []string) *vm {
	t.Helper()
	return startVMIn(t, netnstest.New(t, "img"), img, extra)
}

func startVMIn(t *testing.T, ns *netns.NS, img string, extra []string) *vm {
	t.Helper()
	return startQemu(t, ns, img, extra, false)
}

// startQemu starts qemu; with reboots, a guest reboot resets the machine
// (firmware, loader, the next slot) instead of ending qemu, and the
// console keeps going.
func startQemu(t *testing.T, ns *netns.NS, img string, extra []string, reboots bool) *vm {
	t.Helper()
	args := []string{
		"-machine", "q35", "-accel", "tcg", "-m", "512", "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "stdio",
	}
	if !reboots {
		args = append(args, "-no-reboot")
	}
	args = append(args,
		"-drive", "if=virtio,format=raw,file="+img,
		"-device", "virtio-net-pci,netdev=n0",
		// Entropy: without it (and without RDRAND, which TCG's default CPU
		// lacks) the kernel's CRNG can take long to seed and getrandom blocks.
		"-device", "virtio-rng-pci",
	)
	if extra == nil { // UEFI: OVMF with a private copy of its variable store
		vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
		b, err := os.ReadFile(ovmfVars)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vars, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	if !slices.Contains(extra, "-netdev") {
		args = append(args, "-netdev", "user,id=n0")
	}
	args = append(args, extra...)
	cmd := ns.Command("qemu-system-x86_64", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	v := &vm{t: t, cmd: cmd, exited: make(chan struct{})}
	v.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	t.Cleanup(func() {
		v.kill()
		if t.Failed() {
			t.Logf("console of the VM started at %s:\n%s", v.started.Format(time.TimeOnly), v.tail(120))
		}
	})
	go v.read(out)
	return v
}

func (v *vm) read(r io.Reader) {
	defer close(v.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		v.mu.Lock()
		v.lines = append(v.lines, line)
		v.mu.Unlock()
	}
	_ = v.cmd.Wait()
}

// kill stops qemu by its PID (and waits for it), like pulling the plug.
func (v *vm) kill() {
	if v.cmd.Process == nil {
		return
	}
	_ = v.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-v.exited:
	case <-time.After(10 * time.Second):
	}
}

// expect waits until a console line after the last match matches re, and
// returns its submatches. It fails the test at the deadline or when qemu exits.
func (v *vm) expect(re string, deadline time.Duration) []string {
	v.t.Helper()
	rx := regexp.MustCompile(re)
	end := time.Now().Add(deadline)
	for {
		v.mu.Lock()
		for i := v.next; i < len(v.lines); i++ {
			if m := rx.FindStringSubmatch(v.lines[i]); m != nil {
				v.next = i + 1
				v.mu.Unlock()
				return m
			}
		}
		v.mu.Unlock()
		select {
		case <-v.exited:
			// one more pass over what was read before the exit
			v.mu.Lock()
			for i := v.next; i < len(v.lines); i++ {
				if m := rx.FindStringSubmatch(v.lines[i]); m != nil {
					v.next = i + 1
					v.mu.Unlock()
					return m
				}
			}
			v.mu.Unlock()
			v.t.Fatalf("qemu exited before %q\n%s", re, v.tail(60))
		default:
		}
		if time.Now().After(end) {
			v.t.Fatalf("no console line matching %q within %s\n%s", re, deadline, v.tail(60))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// absent fails if any console line so far matches re.
func (v *vm) absent(re string) {
	v.t.Helper()
	rx := regexp.MustCompile(re)
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, l := range v.lines {
		if rx.MatchString(l) {
			v.t.Errorf("unexpected console line %q", l)
		}
	}
}

func (v *vm) tail(n int) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.lines
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return "--- console (last lines) ---\n" + strings.Join(s, "\n")
}

// bootToInit checks the milestones every boot passes, and returns how long
// the guest said it took (its uptime at the init-ready line) and the
// wall-clock time from starting qemu.
func (v *vm) bootToInit(wantFirstBoot string) (guest string, wall time.Duration) {
	v.t.Helper()
	v.expect(`Linux version \S+`, bootDeadline)
	v.expect(`^meshnode: init: starting`, bootDeadline)
	m := v.expect(`^meshnode: init: modules loaded=(\d+) failed=(\d+)`, time.Minute)
	if m[1] == "0" {
		v.t.Errorf("no modules loaded")
	}
	v.expect(`^meshnode: init: partitions boot=/dev/vda1 perm=/dev/vda2`, time.Minute)
	v.expect(`^meshnode: init: perm mounted at /perm \(formatted=false`, time.Minute)
	v.expect(`^meshnode: init: config name=edge-test join=10\.0\.2\.2:51821`, time.Minute)
	v.expect(`^meshnode: init: network eth0 10\.0\.2\.15/24 gateway 10\.0\.2\.2 dns 10\.0\.2\.3 \(dhcp\)`, time.Minute)
	m = v.expect(`^meshnode: init: ready name=edge-test slot=a first_boot=(\w+) uptime=(\S+)`, time.Minute)
	if m[1] != wantFirstBoot {
		v.t.Errorf("first_boot=%s, want %s", m[1], wantFirstBoot)
	}
	return m[2], time.Since(v.started)
}

// TestApplianceBoot boots the built image twice under qemu (TCG, UEFI) with
// the stub node runner: the first boot reads the configured first-boot
// config, gets a DHCP lease, creates the "identity" on perm, removes the
// token from the ESP and marks slot a good; the second boot finds the same
// identity and no token.
func TestApplianceBoot(t *testing.T) {
	requireImageTools(t)
	img := copyImage(t, testImage(t))
	cfg, err := config.Encode(config.Config{Name: "edge-test", Join: "10.0.2.2:51821", Token: "tok-vmtest-123"})
	if err != nil {
		t.Fatal(err)
	}
	writeESP(t, img, config.Path, cfg)

	v := boot(t, img)
	guest, wall := v.bootToInit("true")
	v.expect(`^meshnode: init: join token removed`, time.Minute)
	id := v.expect(`^meshnode: ready name=edge-test overlay=(stub-[0-9a-f]+)`, time.Minute)[1]
	v.expect(`^meshnode: init: slot a marked good`, time.Minute)
	v.absent(`^meshnode: (fatal|config error)|EXT4-fs error`)
	t.Logf("first boot: init ready at guest uptime %s, %s after qemu started", guest, wall.Round(100*time.Millisecond))
	v.kill()

	if c := readESP(t, img, config.Path); strings.Contains(c, "tok-vmtest-123") || !strings.Contains(c, `name = "edge-test"`) {
		t.Errorf("config.toml after first boot still has the token or lost the name:\n%s", c)
	}
	entries := strings.Join(listESP(t, img, "loader/entries"), " ")
	if !strings.Contains(entries, "meshnode-a.conf") || strings.Contains(entries, "meshnode-a+") {
		t.Errorf("slot a not blessed: entries %s", entries)
	}

	v = boot(t, img)
	guest, wall = v.bootToInit("false")
	if got := v.expect(`^meshnode: ready name=edge-test overlay=(stub-[0-9a-f]+)`, time.Minute)[1]; got != id {
		t.Errorf("second boot identity %s, first boot %s: perm did not keep it", got, id)
	}
	v.absent(`^meshnode: (fatal|config error)|token removed|EXT4-fs error`)
	t.Logf("second boot: init ready at guest uptime %s, %s after qemu started", guest, wall.Round(100*time.Millisecond))
}

// TestApplianceGokrazyKernel: the fallback kernel source (gokrazy's, every
// driver built in, no modules to load) boots the same initramfs to ready.
func TestApplianceGokrazyKernel(t *testing.T) {
	requireImageTools(t)
	netnstest.RequireTool(t, "go")
	im := builtImage(t, "./stubinit", "gokrazy")
	if len(im.man.Modules) != 0 || im.man.Kernel.Source != "gokrazy" {
		t.Fatalf("gokrazy image: source %s, %d modules", im.man.Kernel.Source, len(im.man.Modules))
	}
	img := copyImage(t, im)
	cfg, err := config.Encode(config.Config{Name: "edge-test", Join: "10.0.2.2:51821", Token: "tok-gk"})
	if err != nil {
		t.Fatal(err)
	}
	writeESP(t, img, config.Path, cfg)
	v := bootDirect(t, im, img)
	v.expect(`^meshnode: init: modules loaded=0 failed=0`, bootDeadline)
	v.expect(`^meshnode: init: network eth0 10\.0\.2\.15/24 .*\(dhcp\)`, time.Minute)
	v.expect(`^meshnode: ready name=edge-test overlay=stub-`, time.Minute)
	v.absent(`^meshnode: (fatal|config error)`)
}

// TestApplianceStaticNetwork: with DHCP off (here through the meshnode.*
// kernel arguments that override config.toml) the static address, gateway
// and DNS are used.
func TestApplianceStaticNetwork(t *testing.T) {
	requireImageTools(t)
	im := testImage(t)
	img := copyImage(t, im)
	cfg, err := config.Encode(config.Config{Name: "edge-test", Join: "10.0.2.2:51821", Token: "tok-static"})
	if err != nil {
		t.Fatal(err)
	}
	writeESP(t, img, config.Path, cfg)
	v := bootDirect(t, im, img, "meshnode.dhcp=false", "meshnode.address=10.0.2.77/24", "meshnode.gateway=10.0.2.2", "meshnode.dns=10.0.2.3")
	v.expect(`^meshnode: init: network eth0 10\.0\.2\.77/24 gateway 10\.0\.2\.2 dns 10\.0\.2\.3 \(static\)`, bootDeadline)
	v.expect(`^meshnode: ready name=edge-test overlay=stub-`, time.Minute)
	v.absent(`DHCP on|^meshnode: (fatal|config error)`)
}

// TestApplianceDHCPFallsBackToStatic: on a network without a DHCP server
// (the NIC sits alone on an emulated hub) the static address from
// config.toml is used once DHCP gives up, and the node still starts.
func TestApplianceDHCPFallsBackToStatic(t *testing.T) {
	requireImageTools(t)
	im := testImage(t)
	img := copyImage(t, im)
	cfg, err := config.Encode(config.Config{Name: "edge-test", Join: "10.0.2.2:51821", Token: "tok-fallback",
		Network: config.Network{Address: "10.0.2.77/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}}})
	if err != nil {
		t.Fatal(err)
	}
	writeESP(t, img, config.Path, cfg)
	v := bootDirectQemu(t, im, img, []string{"-netdev", "hubport,id=n0,hubid=0"})
	v.expect(`^meshnode: init: network: DHCP on eth0 `, bootDeadline)
	v.expect(`^meshnode: init: network: DHCP on eth0: `, time.Minute)
	v.expect(`^meshnode: init: network eth0 10\.0\.2\.77/24 gateway 10\.0\.2\.2 dns 10\.0\.2\.3 \(static\)`, time.Minute)
	v.expect(`^meshnode: ready name=edge-test overlay=stub-`, time.Minute)
	v.absent(`^meshnode: (fatal|config error)`)
}

// TestApplianceBadConfig: garbage in config.toml must give a clear console
// error and a retry loop, not a reboot and not a formatted disk.
func TestApplianceBadConfig(t *testing.T) {
	requireImageTools(t)
	im := testImage(t)
	img := copyImage(t, im)
	writeESP(t, img, config.Path, []byte("name = \"edge-test\"\njoin = [garbage\n"))
	v := bootDirect(t, im, img)
	v.expect(`^meshnode: init: perm mounted at /perm \(formatted=false`, bootDeadline)
	v.expect(`^meshnode: config error: /boot/meshnode/config.toml: .*\(retrying in`, time.Minute)
	v.expect(`^meshnode: config error: /boot/meshnode/config.toml: .*\(retrying in`, time.Minute)
	v.absent(`^meshnode: (fatal|ready|init: ready)`)
}

// TestApplianceNoToken: a first boot without join/token says what to run.
func TestApplianceNoToken(t *testing.T) {
	requireImageTools(t)
	im := testImage(t)
	img := copyImage(t, im) // the shipped template: everything commented out
	v := bootDirect(t, im, img)
	v.expect(`^meshnode: config error: .*first boot needs join and token \(run: meshnode image configure`, bootDeadline)
	v.absent(`^meshnode: (fatal|ready|init: ready)`)
}

// TestApplianceCmdlineTokenRefused: a join token given as a kernel argument
// is refused with a message saying why (the command line cannot be cleaned
// after the join), and the box does not join with it. The token itself is
// not repeated in meshnode's messages.
func TestApplianceCmdlineTokenRefused(t *testing.T) {
	requireImageTools(t)
	im := testImage(t)
	img := copyImage(t, im)
	cfg, err := config.Encode(config.Config{Name: "edge-test", Join: "10.0.2.2:51821"})
	if err != nil {
		t.Fatal(err)
	}
	writeESP(t, img, config.Path, cfg)
	const token = "tok-vmtest-cmdline"
	v := bootDirect(t, im, img, "meshnode.token="+token)
	want := `^meshnode: config error: kernel argument meshnode\.token= is refused: .*cannot be cleaned reliably .*\(retrying in`
	v.expect(want, bootDeadline)
	v.expect(want, time.Minute) // and again: the box waits for the operator
	v.absent(`^meshnode: (fatal|ready|init: ready)|token removed`)
	v.absent(`^meshnode: .*` + token)
}

// TestApplianceTokenRemovedStructurally: a config.toml as an editor may
// leave it (a byte order mark, a quoted key, the token as a multi-line
// string) loses its token after the join, keeps its other settings and
// still parses, and the disk holds no copy of it any more. The old
// line-by-line edit kept this token.
func TestApplianceTokenRemovedStructurally(t *testing.T) {
	requireImageTools(t)
	im := testImage(t)
	img := copyImage(t, im)
	const token = "tok-vmtest-bom-quoted"
	cfg := "\ufeff'token' = \"\"\"\n" + token + "\"\"\"\n" +
		"# hand-edited\n\"name\" = \"edge-test\"\njoin = \"10.0.2.2:51821\"\n\n[network]\ninterface = \"eth0\"\n"
	if c, err := config.Parse("test", []byte(cfg)); err != nil || c.Token != token {
		t.Fatalf("test config: %+v %v", c, err)
	}
	writeESP(t, img, config.Path, []byte(cfg))
	v := bootDirect(t, im, img)
	v.expect(`^meshnode: init: config name=edge-test join=10\.0\.2\.2:51821 token_set=true first_boot=true`, bootDeadline)
	v.expect(`^meshnode: init: join token removed from /boot/meshnode/config.toml`, time.Minute)
	v.expect(`^meshnode: ready name=edge-test overlay=stub-`, time.Minute)
	v.expect(`^meshnode: init: slot a marked good`, time.Minute)
	v.absent(`^meshnode: (fatal|config error)|JOIN TOKEN NOT REMOVED`)
	v.kill()

	got := readESP(t, img, config.Path)
	if strings.Contains(got, token) {
		t.Fatalf("token still in config.toml after the join:\n%s", got)
	}
	c, err := config.Parse("config.toml after the join", []byte(got))
	if err != nil {
		t.Fatalf("%v\n%s", err, got)
	}
	if c.Token != "" || c.Name != "edge-test" || c.Join != "10.0.2.2:51821" || c.Network.Interface != "eth0" {
		t.Errorf("settings after the join: %+v\n%s", c, got)
	}
	if !strings.Contains(got, "join token was removed") {
		t.Errorf("no header saying the token was removed:\n%s", got)
	}
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// Not in the file, and not in the freed blocks of the file it replaced.
	if n := bytes.Count(raw, []byte(token)); n != 0 {
		t.Errorf("the token is still on the disk image %d times (FAT does not clear freed clusters)", n)
	}
}
