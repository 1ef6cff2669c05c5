package boot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/image/config"
)

func writeUevent(t *testing.T, sys, dev, partname string) {
	t.Helper()
	d := filepath.Join(sys, dev)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	body := "MAJOR=253\nMINOR=1\nDEVNAME=" + dev + "\nDEVTYPE=partition\n"
	if partname != "" {
		body += "PARTN=1\nPARTNAME=" + partname + "\n"
	}
	if err := os.WriteFile(filepath.Join(d, "uevent"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

var want = map[string]bool{"meshnode-boot": true, "meshnode-perm": true}

func TestFindPartitionsWaitsForSlowDisk(t *testing.T) {
	sys := t.TempDir()
	writeUevent(t, sys, "sda", "")
	writeUevent(t, sys, "sda1", "EFI System")
	writeUevent(t, sys, "nvme0n1p1", "meshnode-boot")
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The perm partition shows up a little later, like a USB disk.
		time.Sleep(300 * time.Millisecond)
		writeUevent(t, sys, "nvme0n1p2", "meshnode-perm")
	}()
	got, err := findPartitions(sys, 10*time.Second, want)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if got["meshnode-boot"] != "nvme0n1p1" || got["meshnode-perm"] != "nvme0n1p2" {
		t.Fatalf("%v", got)
	}
}

func TestFindPartitionsDeadlineAndDuplicates(t *testing.T) {
	sys := t.TempDir()
	writeUevent(t, sys, "vda1", "meshnode-boot")
	_, err := findPartitions(sys, 300*time.Millisecond, want)
	if err == nil || !strings.Contains(err.Error(), "no GPT partition named meshnode-perm") || !strings.Contains(err.Error(), "vda1") {
		t.Fatalf("missing perm: %v", err)
	}
	writeUevent(t, sys, "vda2", "meshnode-perm")
	writeUevent(t, sys, "sdb1", "meshnode-boot")
	_, err = findPartitions(sys, time.Second, want)
	if err == nil || !strings.Contains(err.Error(), "two partitions are named meshnode-boot") {
		t.Fatalf("duplicate boot: %v", err)
	}
}

func TestIsBlank(t *testing.T) {
	dir := t.TempDir()
	blank := filepath.Join(dir, "blank")
	if err := os.WriteFile(blank, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := isBlank(blank); err != nil || !ok {
		t.Fatalf("zeros: %v %v", ok, err)
	}
	// An ext4 superblock magic at 1024+56 makes it not blank.
	b := make([]byte, 1<<20)
	b[1024+56], b[1024+57] = 0x53, 0xef
	used := filepath.Join(dir, "used")
	if err := os.WriteFile(used, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := isBlank(used); err != nil || ok {
		t.Fatalf("ext4 magic: %v %v", ok, err)
	}
	// Data past the probe window does not count: only superblock areas are read.
	b = make([]byte, 1<<20)
	b[blankProbe+10] = 1
	tail := filepath.Join(dir, "tail")
	if err := os.WriteFile(tail, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, _ := isBlank(tail); !ok {
		t.Fatal("data beyond the probe made it non-blank")
	}
}

func TestClockFloor(t *testing.T) {
	dir := t.TempDir()
	info := filepath.Join(dir, "build")
	if err := os.WriteFile(info, []byte(`{"version":"x","epoch":1767225600}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := clockFloor(dir, info); got.Unix() != 1767225600 {
		t.Fatalf("build floor: %v", got)
	}
	if err := os.WriteFile(filepath.Join(dir, clockFile), []byte("1800000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := clockFloor(dir, info); got.Unix() != 1800000000 {
		t.Fatalf("saved clock: %v", got)
	}
	if err := os.WriteFile(filepath.Join(dir, clockFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := clockFloor(dir, info); got.Unix() != 1767225600 {
		t.Fatalf("garbage saved clock: %v", got)
	}
	if err := saveClock(dir); err != nil {
		t.Fatal(err)
	}
	if got := clockFloor(dir, info); time.Since(got) > time.Minute {
		t.Fatalf("after saveClock: %v", got)
	}
}

func TestBlessSlot(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"meshnode-a+2-1.conf", "meshnode-b.conf"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := blessSlot(dir, "a"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "meshnode-a.conf")); err != nil || string(b) != "meshnode-a+2-1.conf" {
		t.Fatalf("blessed entry: %v %q", err, b)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "meshnode-a+*")); len(m) != 0 {
		t.Fatalf("counting entry left: %v", m)
	}
	if err := blessSlot(dir, "a"); err != nil {
		t.Fatalf("blessing twice: %v", err)
	}
	if err := blessSlot(dir, ""); err == nil {
		t.Fatal("no slot accepted")
	}
}

func TestCmdlineValue(t *testing.T) {
	c := "BOOT_IMAGE=/x console=ttyS0,115200 meshnode.slot=b panic=10"
	if cmdlineValue(c, "meshnode.slot") != "b" || cmdlineValue(c, "console") != "ttyS0,115200" || cmdlineValue(c, "quiet") != "" {
		t.Fatal("cmdlineValue")
	}
}

func TestLoadModulesWithoutOrderFile(t *testing.T) {
	if n, failed := loadModules(t.TempDir()); n != 0 || failed != 0 {
		t.Fatalf("built-in kernel: loaded %d failed %d", n, failed)
	}
}

// TestRemoveToken: the token goes from the file on disk whatever its
// spelling, the rest of the settings stay, the file is replaced (no temp
// file left), and a file without a token or with invalid TOML is left as
// it is.
func TestRemoveToken(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"double-quoted key", "name = \"edge-1\"\njoin = \"10.0.2.2\"\n\"token\" = \"mnj1-secret\"\n[network]\ndhcp = false\naddress = \"192.0.2.7/24\"\n"},
		{"single-quoted key", "name = \"edge-1\"\njoin = \"10.0.2.2\"\n'token' = 'mnj1-secret'\n[network]\ndhcp = false\naddress = \"192.0.2.7/24\"\n"},
		{"BOM", "\ufefftoken = \"mnj1-secret\"\nname = \"edge-1\"\njoin = \"10.0.2.2\"\n[network]\ndhcp = false\naddress = \"192.0.2.7/24\"\n"},
		{"multi-line value", "name = \"edge-1\"\njoin = \"10.0.2.2\"\ntoken = \"\"\"\nmnj1-secret\"\"\"\n[network]\ndhcp = false\naddress = \"192.0.2.7/24\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(path, []byte(tc.in), 0o600); err != nil {
				t.Fatal(err)
			}
			removed, err := removeToken(path, time.Now())
			if err != nil || !removed {
				t.Fatalf("removeToken: %t %v", removed, err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "mnj1-secret") {
				t.Fatalf("token still there:\n%s", b)
			}
			c, err := config.Parse(path, b)
			if err != nil {
				t.Fatalf("rewritten config: %v\n%s", err, b)
			}
			if c.Token != "" || c.Name != "edge-1" || c.Join != "10.0.2.2" || c.Network.UseDHCP() || c.Network.Address != "192.0.2.7/24" {
				t.Fatalf("settings after removal: %+v", c)
			}
			if m, _ := filepath.Glob(path + ".*"); len(m) != 0 {
				t.Fatalf("temporary files left: %v", m)
			}
			// Again: nothing left to remove, nothing rewritten.
			if removed, err := removeToken(path, time.Now()); err != nil || removed {
				t.Fatalf("second removeToken: %t %v", removed, err)
			}
			if b2, _ := os.ReadFile(path); string(b2) != string(b) {
				t.Fatal("file rewritten without a token to remove")
			}
		})
	}

	path := filepath.Join(t.TempDir(), "config.toml")
	bad := "name = \"edge-1\"\nmnj1-secret\"\"\"\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := removeToken(path, time.Now()); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("invalid TOML: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != bad {
		t.Fatal("invalid file was modified")
	}
}

// captureConsole collects what PID 1 would print during the test.
func captureConsole(t *testing.T) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	old := console
	console = &b
	t.Cleanup(func() { console = old })
	return &b
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestEnrolledBoxIgnoresConfigErrors: a config error stops a box only
// before enrollment. An enrolled box prints the error and comes up with
// what is usable: the kernel arguments, else DHCP.
func TestEnrolledBoxIgnoresConfigErrors(t *testing.T) {
	out := captureConsole(t)
	garbage := writeConfig(t, "name = \"edge-1\"\njoin = [garbage\n")
	if _, err := readConfig(garbage, "", true); err == nil || !strings.Contains(err.Error(), garbage) {
		t.Fatalf("first boot, garbage config: %v", err)
	}

	p := &prepared{cmdline: "console=ttyS0 meshnode.dhcp=false meshnode.address=10.0.2.77/24 meshnode.gateway=10.0.2.2"}
	done := make(chan config.Config)
	go func() { done <- p.readConfigUntilValid(garbage) }()
	var c config.Config
	select {
	case c = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("enrolled box still retrying its config")
	}
	if c.Network.UseDHCP() || c.Network.Address != "10.0.2.77/24" || c.Network.Gateway != "10.0.2.2" || c.Token != "" {
		t.Fatalf("enrolled fallback from the kernel arguments: %+v", c)
	}
	got := out.String()
	if !strings.Contains(got, ConfigErrPrefix+" "+garbage) || !strings.Contains(got, "this box is enrolled: coming up from") ||
		!strings.Contains(got, "kernel arguments used") {
		t.Fatalf("console:\n%s", got)
	}

	// A missing file, or bad kernel arguments as well: DHCP on the first interface.
	for _, path := range []string{garbage, filepath.Join(t.TempDir(), "missing.toml")} {
		c := fallbackConfig(path, "meshnode.dhcp=maybe")
		if !c.Network.UseDHCP() || c.Network.Address != "" || c.Name != "" {
			t.Fatalf("fallback with nothing usable (%s): %+v", path, c)
		}
	}
}

// TestCmdlineTokenRefused: meshnode.token= is refused before enrollment
// (a config error the operator must fix) and ignored with the same message
// after it, while the rest of the kernel arguments and config.toml apply.
func TestCmdlineTokenRefused(t *testing.T) {
	out := captureConsole(t)
	path := writeConfig(t, "name = \"edge-1\"\njoin = \"10.0.2.2\"\n[network]\ndns = [\"10.0.2.3\"]\n")
	cmdline := "console=ttyS0 meshnode.token=mnj1-secret meshnode.interface=eth1"
	_, err := readConfig(path, cmdline, true)
	if !errors.Is(err, config.ErrCmdlineToken) {
		t.Fatalf("first boot: %v", err)
	}

	p := &prepared{cmdline: cmdline}
	c := p.readConfigUntilValid(path)
	if c.Token != "" || c.Name != "edge-1" || c.Network.Interface != "eth1" || len(c.Network.DNS) != 1 {
		t.Fatalf("enrolled box with a token argument: %+v", c)
	}
	got := out.String()
	if !strings.Contains(got, "meshnode.token= is refused") || strings.Contains(got, "mnj1-secret") {
		t.Fatalf("console (the refusal must be said, the token not repeated):\n%s", got)
	}
}

// TestFallbackKeepsFileToken: an enrolled box whose usable config.toml
// still has a token gets it back from fallbackConfig, so that PID 1 can
// remove it.
func TestFallbackKeepsFileToken(t *testing.T) {
	captureConsole(t)
	path := writeConfig(t, "name = \"edge-1\"\njoin = \"10.0.2.2\"\n'token' = \"mnj1-secret\"\n")
	c := fallbackConfig(path, "meshnode.nmae=typo")
	if c.Token != "mnj1-secret" || c.Name != "edge-1" {
		t.Fatalf("%+v", c)
	}
}

// TestEnrolled: only the ticket, written last by a successful join, makes a
// state directory enrolled; a seed alone (a join cut short) does not.
func TestEnrolled(t *testing.T) {
	dir := t.TempDir()
	if enrolled(dir) {
		t.Fatal("empty directory enrolled")
	}
	if err := os.WriteFile(filepath.Join(dir, "identity.seed"), make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	if enrolled(dir) {
		t.Fatal("seed alone counts as enrolled")
	}
	if err := os.WriteFile(filepath.Join(dir, "ticket.bin"), []byte("t"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !enrolled(dir) {
		t.Fatal("ticket not seen")
	}
}

func TestDropCmdlineKey(t *testing.T) {
	got := dropCmdlineKey("console=ttyS0 meshnode.token=x meshnode.tokenx=y meshnode.token= quiet", "meshnode.token")
	if got != "console=ttyS0 meshnode.tokenx=y quiet" {
		t.Fatalf("%q", got)
	}
}

// TestRemoveTokenScrubsOldFile: the replaced file is overwritten, so its
// blocks (freed, not cleared, on FAT) do not keep the token. A second link
// to the old file makes it visible here.
func TestRemoveTokenScrubsOldFile(t *testing.T) {
	captureConsole(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	in := "name = \"edge-1\"\njoin = \"10.0.2.2\"\ntoken = \"mnj1-secret\"\n"
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	oldLink := filepath.Join(dir, "old")
	if err := os.Link(path, oldLink); err != nil {
		t.Fatal(err)
	}
	if removed, err := removeToken(path, time.Now()); err != nil || !removed {
		t.Fatalf("removeToken: %t %v", removed, err)
	}
	b, err := os.ReadFile(oldLink)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, make([]byte, len(in))) {
		t.Fatalf("old file not cleared: %q", b)
	}
}
