package initramfs

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

func TestReproducibleAndComplete(t *testing.T) {
	spec := Spec{
		Init:    []byte("\x7fELF fake init"),
		Modules: []File{{Path: "kernel/fs/jbd2/jbd2.ko", Data: []byte("jbd2")}, {Path: "kernel/fs/ext4/ext4.ko", Data: []byte("ext4")}},
		Extra:   []File{{Path: InfoFile, Data: []byte("x"), Mode: 0o644}},
		MTime:   1700000000,
	}
	a, err := Bytes(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Bytes(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same spec differ")
	}
	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]cpio.Record{}
	prev := ""
	for _, r := range recs {
		if r.Name <= prev {
			t.Errorf("not sorted: %q after %q", r.Name, prev)
		}
		prev = r.Name
		if r.MTime != spec.MTime || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: mtime %d uid %d gid %d", r.Name, r.MTime, r.UID, r.GID)
		}
		got[r.Name] = r
	}
	content := func(name string) string {
		r, ok := got[name]
		if !ok {
			t.Fatalf("%s missing; have %v", name, len(got))
		}
		b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if content("init") != string(spec.Init) || got["init"].Mode&0o777 != 0o755 {
		t.Error("init wrong")
	}
	if o := content("lib/modules/load-order"); o != "jbd2.ko\next4.ko\n" {
		t.Errorf("order file %q", o)
	}
	if c, ok := got["dev/console"]; !ok || c.Mode&cpio.S_IFMT != cpio.S_IFCHR || c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("dev/console: %+v", c.Info)
	}
	for _, d := range []string{"proc", "sys", "lib", "lib/modules", "etc", "tmp"} {
		if r, ok := got[d]; !ok || r.Mode&cpio.S_IFMT != cpio.S_IFDIR {
			t.Errorf("directory %s missing", d)
		}
	}
}

func TestDuplicateRejected(t *testing.T) {
	_, err := Bytes(Spec{Init: []byte("x"), Extra: []File{{Path: "init", Data: []byte("y")}}})
	if err == nil {
		t.Fatal("duplicate /init accepted")
	}
}
