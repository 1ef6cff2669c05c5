package build

import (
	"os"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/image/config"
	"github.com/meshnode/meshnode/image/update"
)

func TestESPFilesLoaderMatchesBothSlots(t *testing.T) {
	files := ESPFiles([]byte("efi"), []byte("kernel"), []byte("initrd"), "console=ttyS0", "v1")
	byPath := map[string]string{}
	for _, f := range files {
		byPath[f.Path] = string(f.Data)
	}
	loader := byPath["loader/loader.conf"]
	m := regexp.MustCompile(`(?m)^default (\S+)$`).FindStringSubmatch(loader)
	if m == nil {
		t.Fatalf("no default in loader.conf:\n%s", loader)
	}
	var slots []string
	for p, body := range byPath {
		if !strings.HasPrefix(p, "loader/entries/") {
			continue
		}
		// systemd-boot matches default against the entry id, the file name
		// without boot counting suffix and .conf.
		id := strings.TrimSuffix(path.Base(p), ".conf")
		if i := strings.IndexByte(id, '+'); i >= 0 {
			id = id[:i]
		}
		if ok, _ := path.Match(m[1], id); !ok {
			t.Errorf("default %q does not match entry %s", m[1], p)
		}
		slot := strings.TrimPrefix(id, "meshnode-")
		slots = append(slots, slot)
		for _, want := range []string{"linux /meshnode/" + slot + "/vmlinuz", "initrd /meshnode/" + slot + "/initrd.img", "meshnode.slot=" + slot, "sort-key meshnode"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %q:\n%s", p, want, body)
			}
		}
		if _, ok := byPath["meshnode/"+slot+"/vmlinuz"]; !ok {
			t.Errorf("slot %s has no kernel", slot)
		}
	}
	if len(slots) != 2 {
		t.Fatalf("want entries for two slots, got %v", slots)
	}
	if _, ok := byPath["loader/entries/meshnode-a+3.conf"]; !ok {
		t.Error("slot a is not under boot counting")
	}
	if byPath[config.Path] != config.Template {
		t.Error("config.toml is not the commented template")
	}
}

func TestCheckStatic(t *testing.T) {
	if err := CheckStatic("x", []byte("#!/bin/sh\n")); err == nil {
		t.Error("a shell script accepted as init")
	}
	sh, err := os.ReadFile("/bin/sh")
	if err == nil {
		if err := CheckStatic("/bin/sh", sh); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Errorf("/bin/sh: %v", err)
		}
	}
}

// TestESPFilesAsUpdateSees: the installer (image/update) reads the fresh
// image's entries as systemd-boot does: slot a first and under counting,
// slot b blessed behind it.
func TestESPFilesAsUpdateSees(t *testing.T) {
	dir := update.DirFS(t.TempDir())
	for _, f := range ESPFiles([]byte("efi"), []byte("kernel"), []byte("initrd"), "console=ttyS0", "v1") {
		if err := dir.WriteFile(f.Path, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	es, err := update.Entries(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Slot != "a" || es[0].Left != BootTries || es[1].Slot != "b" || es[1].Counting() {
		t.Fatalf("entries %+v", es)
	}
}
