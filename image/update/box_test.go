package update

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1790000000, 0).UTC()

// freshESP lays out what the image builder writes: slot a preferred and
// counting, slot b the blessed fallback, both generation 1.
func freshESP(t *testing.T) DirFS {
	t.Helper()
	esp := DirFS(t.TempDir())
	cmd := "console=ttyS0 panic=10"
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"loader/loader.conf", []byte("default meshnode-*\ntimeout 0\n")},
		{"loader/entries/meshnode-a+3.conf", EntryText("a", 2, "v1", cmd)},
		{"loader/entries/meshnode-b.conf", EntryText("b", 1, "v1", cmd)},
		{"meshnode/a/vmlinuz", []byte("kernel v1")},
		{"meshnode/a/initrd.img", []byte("initrd v1")},
		{"meshnode/b/vmlinuz", []byte("kernel v1")},
		{"meshnode/b/initrd.img", []byte("initrd v1")},
	} {
		if err := esp.WriteFile(f.name, f.data); err != nil {
			t.Fatal(err)
		}
	}
	return esp
}

// loaderBoot is systemd-boot with "default meshnode-*" and boot counting:
// it picks the first entry in its sort order and, if that entry is
// counting and has tries left, renames it to one try fewer before it boots
// it. It returns the booted slot and the files the entry points at.
func loaderBoot(t *testing.T, esp DirFS) (slot string, kernel, initrd []byte) {
	t.Helper()
	es, err := Entries(esp)
	if err != nil || len(es) == 0 {
		t.Fatalf("loader: no entries: %v", err)
	}
	e := es[0]
	text, _ := esp.ReadFile(path.Join(EntriesDir, e.File))
	if e.Counting() && e.Left > 0 {
		to := fmt.Sprintf("meshnode-%s+%d-%d.conf", e.Slot, e.Left-1, e.Done+1)
		if err := os.Rename(filepath.Join(string(esp), EntriesDir, e.File), filepath.Join(string(esp), EntriesDir, to)); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Contains(text, []byte("linux /meshnode/"+e.Slot+"/vmlinuz\n")) || !bytes.Contains(text, []byte("meshnode.slot="+e.Slot+"\n")) {
		t.Fatalf("entry %s does not boot its own slot:\n%s", e.File, text)
	}
	kernel, _ = esp.ReadFile(SlotFile(e.Slot, FileKernel))
	initrd, _ = esp.ReadFile(SlotFile(e.Slot, FileInitramfs))
	return e.Slot, kernel, initrd
}

func signedBundle(t *testing.T, gen uint64, tag string) *Bundle {
	t.Helper()
	key, pub := testCA(t)
	b, err := NewBundle(gen, "amd64", "v"+tag, map[string][]byte{
		FileKernel: []byte("kernel " + tag), FileInitramfs: []byte("initrd " + tag), FileCmdline: []byte("console=ttyS0 panic=10\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sign(key, pub, t0, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	return b
}

func openBox(t *testing.T, esp FS, state, slot string, running Running) *Box {
	t.Helper()
	b, err := Open(BoxConfig{ESP: esp, StatePath: state, Slot: slot, Running: running, Arch: "amd64"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tree is every file of the ESP with its digest, to prove nothing changed.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			out = append(out, fmt.Sprintf("%s %x", strings.TrimPrefix(p, dir), sha256.Sum256(b)))
		}
		return nil
	})
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// TestUpdateHappyPath: slot a (generation 1) installs generation 2 into
// slot b; the loader boots b on trial; b is blessed once healthy and its
// generation becomes the floor; the next update goes to slot a.
func TestUpdateHappyPath(t *testing.T) {
	esp := freshESP(t)
	state := filepath.Join(t.TempDir(), "update.json")
	_, pub := testCA(t)

	slot, _, _ := loaderBoot(t, esp)
	if slot != "a" {
		t.Fatalf("fresh image boots slot %s", slot)
	}
	box := openBox(t, esp, state, slot, Running{1, "v1"})
	if box.Kind() != BootNormal {
		t.Fatalf("first boot is %v", box.Kind())
	}
	if _, err := box.Bless(t0); err != nil {
		t.Fatal(err)
	}
	e, err := box.Install(signedBundle(t, 2, "2"), pub, t0)
	if err != nil {
		t.Fatal(err)
	}
	if e.File != "meshnode-b+3.conf" || e.Version != 3 {
		t.Fatalf("new entry %+v", e)
	}
	if st := box.State(); st.Pending == nil || st.Pending.Phase != PhaseWritten || st.Pending.Slot != "b" {
		t.Fatalf("state after install: %+v", st.Pending)
	}
	// A second generation-2 offer is refused while it waits for its reboot.
	if _, err := box.Install(signedBundle(t, 2, "2"), pub, t0); !errors.Is(err, ErrOldGen) {
		t.Fatalf("second install of the pending generation: %v", err)
	}

	slot, k, i := loaderBoot(t, esp)
	if slot != "b" || string(k) != "kernel 2" || string(i) != "initrd 2" {
		t.Fatalf("after install the loader boots %s with %q %q", slot, k, i)
	}
	box = openBox(t, esp, state, slot, Running{2, "v2"})
	if box.Kind() != BootTrial {
		t.Fatalf("boot of the new slot is %v", box.Kind())
	}
	if _, err := box.Install(signedBundle(t, 3, "3"), pub, t0); !errors.Is(err, ErrTrial) {
		t.Fatalf("install during a trial: %v", err)
	}
	if ok, err := box.Bless(t0); err != nil || !ok {
		t.Fatalf("bless: %v %v", ok, err)
	}
	st := box.State()
	if st.Installed != 2 || st.Pending != nil || st.Last == nil || st.Last.Result != ResultBlessed {
		t.Fatalf("state after bless: %+v", st)
	}
	if _, err := box.Install(signedBundle(t, 2, "2"), pub, t0); !errors.Is(err, ErrOldGen) {
		t.Fatalf("reinstall of the blessed generation: %v", err)
	}

	// Blessed slots are not counted: b stays the default across reboots.
	for range 3 {
		if slot, _, _ := loaderBoot(t, esp); slot != "b" {
			t.Fatalf("blessed b not booted: %s", slot)
		}
	}
	box = openBox(t, esp, state, "b", Running{2, "v2"})
	if _, err := box.Install(signedBundle(t, 3, "3"), pub, t0); err != nil {
		t.Fatal(err)
	}
	if slot, k, _ := loaderBoot(t, esp); slot != "a" || string(k) != "kernel 3" {
		t.Fatalf("generation 3 should boot from a: %s %q", slot, k)
	}
}

// TestUpdateTrialFails: the new slot boots but is not healthy; Fail marks
// it bad, the loader boots the old slot, which reports the rollback with
// the trial's reason and refuses that generation from then on.
func TestUpdateTrialFails(t *testing.T) {
	esp := freshESP(t)
	state := filepath.Join(t.TempDir(), "update.json")
	_, pub := testCA(t)
	loaderBoot(t, esp)
	box := openBox(t, esp, state, "a", Running{1, "v1"})
	box.Bless(t0)
	if _, err := box.Install(signedBundle(t, 2, "2"), pub, t0); err != nil {
		t.Fatal(err)
	}
	slot, _, _ := loaderBoot(t, esp)
	box = openBox(t, esp, state, slot, Running{2, "v2"})
	if err := box.Fail("no alive member with a fresh handshake within 10m0s"); err != nil {
		t.Fatal(err)
	}
	slot, k, _ := loaderBoot(t, esp)
	if slot != "a" || string(k) != "kernel v1" {
		t.Fatalf("after a failed trial the loader boots %s %q", slot, k)
	}
	box = openBox(t, esp, state, slot, Running{1, "v1"})
	st := box.State()
	if box.Kind() != BootRolledBack || st.Last == nil || st.Last.Result != ResultRolledBack ||
		st.Last.Reason != "no alive member with a fresh handshake within 10m0s" || st.Installed != 1 {
		t.Fatalf("after the rollback: %v %+v %+v", box.Kind(), st, st.Last)
	}
	if _, err := box.Install(signedBundle(t, 2, "2"), pub, t0); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("the rolled-back generation again: %v", err)
	}
	if _, err := box.Install(signedBundle(t, 3, "3"), pub, t0); err != nil {
		t.Fatalf("a newer generation after a rollback: %v", err)
	}
}

// TestUpdateSlotNeverStarts: the new kernel or initramfs crashes before the
// node runs, so nothing on the box blesses or fails it: systemd-boot uses
// its tries and falls back by itself, and the old slot says so.
func TestUpdateSlotNeverStarts(t *testing.T) {
	esp := freshESP(t)
	state := filepath.Join(t.TempDir(), "update.json")
	_, pub := testCA(t)
	loaderBoot(t, esp)
	box := openBox(t, esp, state, "a", Running{1, "v1"})
	box.Bless(t0)
	if _, err := box.Install(signedBundle(t, 2, "2"), pub, t0); err != nil {
		t.Fatal(err)
	}
	for try := 1; try <= Tries; try++ {
		if slot, _, _ := loaderBoot(t, esp); slot != "b" {
			t.Fatalf("try %d booted %s", try, slot)
		}
	}
	slot, _, _ := loaderBoot(t, esp)
	if slot != "a" {
		t.Fatalf("after %d crashed tries the loader boots %s", Tries, slot)
	}
	box = openBox(t, esp, state, slot, Running{1, "v1"})
	st := box.State()
	if box.Kind() != BootRolledBack || !strings.Contains(st.Last.Reason, "slot b never started the node") || !strings.Contains(st.Last.Reason, "meshnode-b+0-3.conf") {
		t.Fatalf("rollback after crashes: %v %+v", box.Kind(), st.Last)
	}
}

// TestUpdateRefusedWritesNothing: every refused bundle leaves the ESP and
// the state file byte for byte as they were.
func TestUpdateRefusedWritesNothing(t *testing.T) {
	_, pub := testCA(t)
	badSig := signedBundle(t, 2, "2")
	badSig.Manifest.Signature[0] ^= 1
	badHash := signedBundle(t, 2, "2")
	badHash.Files[FileInitramfs] = []byte("initrd X")
	arch := signedBundle(t, 2, "2")
	arch.Manifest.Arch = "arm64"
	key, _ := testCA(t)
	arch.Manifest.Sign(key, pub)
	for _, tc := range []struct {
		name string
		b    *Bundle
		kind error
	}{
		{"bad signature", badSig, ErrBadSignature},
		{"hash mismatch", badHash, ErrHash},
		{"wrong arch", arch, ErrWrongArch},
		{"older generation", signedBundle(t, 1, "1"), ErrOldGen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			esp := freshESP(t)
			state := filepath.Join(t.TempDir(), "update.json")
			box := openBox(t, esp, state, "a", Running{1, "v1"})
			before, stBefore := tree(t, string(esp)), tree(t, filepath.Dir(state))
			if _, err := box.Install(tc.b, pub, t0); !errors.Is(err, tc.kind) {
				t.Fatalf("Install = %v, want %v", err, tc.kind)
			}
			if after := tree(t, string(esp)); after != before {
				t.Fatalf("ESP changed:\n%s\n---\n%s", before, after)
			}
			if after := tree(t, filepath.Dir(state)); after != stBefore {
				t.Fatalf("state changed:\n%s\n---\n%s", stBefore, after)
			}
		})
	}
}

// cutFS cuts the power at the n-th change: a WriteFile then leaves half
// its temporary file behind, and every later change fails.
type cutFS struct {
	DirFS
	n, ops int
}

var errPowerCut = errors.New("power cut")

func (c *cutFS) cut() bool { c.ops++; return c.ops >= c.n }

func (c *cutFS) WriteFile(name string, data []byte) error {
	if c.cut() {
		os.MkdirAll(filepath.Dir(c.path(name)), 0o755)
		os.WriteFile(c.path(name)+".tmp", data[:len(data)/2], 0o644)
		return errPowerCut
	}
	return c.DirFS.WriteFile(name, data)
}

func (c *cutFS) Rename(from, to string) error {
	if c.cut() {
		return errPowerCut
	}
	return c.DirFS.Rename(from, to)
}

func (c *cutFS) Remove(name string) error {
	if c.cut() {
		return errPowerCut
	}
	return c.DirFS.Remove(name)
}

// TestUpdatePowerCut cuts the power at every step of an install: the box
// always boots the slot it was running with that slot's own files, the
// next boot says the install was interrupted (or, once the entry is
// written, tries the new slot), and a new install then succeeds.
func TestUpdatePowerCut(t *testing.T) {
	_, pub := testCA(t)
	for n := 1; ; n++ {
		esp := freshESP(t)
		state := filepath.Join(t.TempDir(), "update.json")
		box := openBox(t, esp, state, "a", Running{1, "v1"})
		box.Bless(t0)
		cut := &cutFS{DirFS: esp, n: n}
		box.esp = cut
		_, err := box.Install(signedBundle(t, 2, "2"), pub, t0)
		if err == nil {
			if n < 4 {
				t.Fatalf("install finished after only %d changes", n)
			}
			t.Logf("an install is %d ESP changes", cut.ops)
			return
		}
		if !errors.Is(err, errPowerCut) {
			t.Fatalf("cut at %d: %v", n, err)
		}
		slot, k, i := loaderBoot(t, esp)
		if slot != "a" || string(k) != "kernel v1" || string(i) != "initrd v1" {
			t.Fatalf("cut at change %d: the loader boots %s with %q %q", n, slot, k, i)
		}
		box = openBox(t, esp, state, slot, Running{1, "v1"})
		if box.Kind() != BootInterrupted {
			t.Fatalf("cut at change %d: boot is %v (%+v)", n, box.Kind(), box.State())
		}
		if _, err := box.Install(signedBundle(t, 2, "2"), pub, t0); err != nil {
			t.Fatalf("cut at change %d: install after the restart: %v", n, err)
		}
		if slot, k, _ := loaderBoot(t, esp); slot != "b" || string(k) != "kernel 2" {
			t.Fatalf("cut at change %d: after a clean install the loader boots %s %q", n, slot, k)
		}
	}
}

func TestStateStrict(t *testing.T) {
	p := filepath.Join(t.TempDir(), "update.json")
	for _, tc := range []struct{ data, want string }{
		{`{"format":1,"installed_generation":3,"extra":1}`, "unknown field"},
		{`{"format":2}`, "format 2"},
		{`{"format":1,"pending":{"slot":"c","generation":2}}`, `slot "c"`},
		{`not json`, "invalid character"},
	} {
		os.WriteFile(p, []byte(tc.data), 0o600)
		if _, err := LoadState(p); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("LoadState(%s) = %v, want %q naming the file", tc.data, err, tc.want)
		}
	}
}
