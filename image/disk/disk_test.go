package disk

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
)

var small = Layout{Size: 320 * MiB, ESPSize: 256 * MiB}

func TestCreateAndEditESP(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	files := []File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: []byte("efi")},
		{Path: "meshnode/a/vmlinuz", Data: []byte(strings.Repeat("k", 100000))},
		{Path: "meshnode/config.toml", Data: []byte("# empty\n")},
	}
	if err := Create(img, small, "seed", files); err != nil {
		t.Fatal(err)
	}
	e, err := OpenESP(img, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.ReadFile("meshnode/a/vmlinuz")
	if err != nil || string(got) != string(files[1].Data) {
		t.Fatalf("vmlinuz: %v, %d bytes", err, len(got))
	}
	if err := e.WriteFile("meshnode/config.toml", []byte("name = \"x\"\n")); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = OpenESP(img, false)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	got, err = e.ReadFile("meshnode/config.toml")
	if err != nil || string(got) != "name = \"x\"\n" {
		t.Fatalf("config after rewrite: %v %q", err, got)
	}
	names, err := e.List("meshnode")
	if err != nil || strings.Join(names, ",") != "a,config.toml" {
		t.Fatalf("List: %v %v", names, err)
	}

	// Independent checks when the tools are here: the GPT names and the ext4 filesystem.
	if sf, err := exec.LookPath("sfdisk"); err == nil {
		out, err := exec.Command(sf, "--json", img).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"name":"meshnode-boot"`) || !strings.Contains(string(out), `"name":"meshnode-perm"`) {
			t.Errorf("sfdisk: %v\n%s", err, out)
		}
	}
	if fsck, err := exec.LookPath("e2fsck"); err == nil {
		perm := extractPartition(t, img, 2)
		out, err := exec.Command(fsck, "-fn", perm).CombinedOutput()
		if err != nil {
			t.Errorf("e2fsck on perm: %v\n%s", err, out)
		}
	}
}

func extractPartition(t *testing.T, img string, idx int) string {
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.GetPartitionTable(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "part.img")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := d.ReadPartitionContents(idx, f); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeterministicGUIDs(t *testing.T) {
	if guid("a", "disk") != guid("a", "disk") || guid("a", "disk") == guid("b", "disk") {
		t.Fatal("guid not a function of seed")
	}
}

func TestNotMeshnode(t *testing.T) {
	img := filepath.Join(t.TempDir(), "plain.img")
	if err := os.WriteFile(img, make([]byte, 4*MiB), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenESP(img, true)
	if !errors.Is(err, ErrNotMeshnode) {
		t.Fatalf("blank image: %v", err)
	}
}

func TestMountedDeviceRefused(t *testing.T) {
	// Whatever backs / is mounted by definition.
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skip("no /proc")
	}
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 9 && f[4] == "/" {
			for i, x := range f {
				if x == "-" && i+2 < len(f) && strings.HasPrefix(f[i+2], "/dev/") {
					if _, err := os.Stat(f[i+2]); err != nil {
						t.Skipf("root device %s not visible", f[i+2])
					}
					err := CheckNotMounted(f[i+2])
					if err == nil || !strings.Contains(err.Error(), "mounted") {
						t.Fatalf("CheckNotMounted(%s) = %v", f[i+2], err)
					}
					return
				}
			}
		}
	}
	t.Skip("root is not on a block device")
}

func TestRewriteShorter(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := Create(img, small, "seed", []File{{Path: "meshnode/config.toml", Data: []byte(strings.Repeat("long line\n", 200))}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"short\n", strings.Repeat("x", 5000), "tiny"} {
		e, err := OpenESP(img, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.WriteFile("meshnode/config.toml", []byte(want)); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		e, err = OpenESP(img, false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.ReadFile("meshnode/config.toml")
		e.Close()
		if err != nil || string(got) != want {
			t.Fatalf("after rewrite: %v, %d bytes, want %d", err, len(got), len(want))
		}
		if mtype, err := exec.LookPath("mtype"); err == nil {
			out, err := exec.Command(mtype, "-i", img+"@@1M", "::meshnode/config.toml").CombinedOutput()
			if err != nil || string(out) != want {
				t.Fatalf("mtype sees %d bytes (%v), want %d: %s", len(out), err, len(want), out)
			}
		}
	}
}
