// Package initramfs writes the appliance's initramfs: a newc cpio archive,
// gzip-compressed, holding /init (the static meshnode binary), the kernel
// modules PID 1 loads and the list saying in which order. The output is
// reproducible: entries are sorted, every timestamp is fixed, owners are
// root and inode numbers are assigned in order, so the same inputs give the
// same bytes.
package initramfs

import (
	"bytes"

	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/u-root/pkg/cpio"
)

// ModulesDir is where modules live inside the initramfs; PID 1 reads
// ModulesDir/OrderFile and loads each listed file in turn.
const (
	ModulesDir = "lib/modules"
	OrderFile  = "load-order"
	// InfoFile holds build facts PID 1 prints and uses (e.g. the clock floor).
	InfoFile = "etc/meshnode-build"
)

// File is one regular file in the archive.
type File struct {
	Path string // relative, slash-separated, e.g. "lib/modules/tun.ko"
	Data []byte
	Mode uint64 // permission bits, e.g. 0o755
}

// Spec is everything that goes into the initramfs.
type Spec struct {
	Init    []byte // the static meshnode binary
	Modules []File // in load order; only their base names are used for the order file
	Extra   []File
	MTime   uint64 // seconds since the epoch stamped on every entry
}

// Write writes the gzip-compressed archive to w.
func Write(w io.Writer, s Spec) error {
	if len(s.Init) == 0 {
		return fmt.Errorf("initramfs: empty /init")
	}
	var recs []cpio.Record
	dirs := map[string]bool{}
	addDir := func(p string) {
		for d := p; d != "." && d != "/" && d != ""; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "etc", "boot", "perm", "var"} {
		addDir(d)
	}
	files := []File{{Path: "init", Data: s.Init, Mode: 0o755}}
	var order strings.Builder
	for _, m := range s.Modules {
		name := path.Base(m.Path)
		files = append(files, File{Path: ModulesDir + "/" + name, Data: m.Data, Mode: 0o644})
		order.WriteString(name + "\n")
	}
	if len(s.Modules) > 0 {
		files = append(files, File{Path: ModulesDir + "/" + OrderFile, Data: []byte(order.String()), Mode: 0o644})
	}
	files = append(files, s.Extra...)
	seen := map[string]bool{}
	for _, f := range files {
		p := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		if seen[p] {
			return fmt.Errorf("initramfs: %s twice", p)
		}
		seen[p] = true
		addDir(path.Dir(p))
		recs = append(recs, cpio.StaticRecord(f.Data, cpio.Info{Name: p, Mode: cpio.S_IFREG | f.Mode, FileSize: uint64(len(f.Data))}))
	}
	for d := range dirs {
		mode := uint64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		recs = append(recs, cpio.Directory(d, mode))
	}
	// The kernel opens /dev/console for PID 1's stdio before anything can
	// mount devtmpfs, so the node must be in the archive itself.
	recs = append(recs, cpio.CharDev("dev/console", 0o600, 5, 1), cpio.CharDev("dev/null", 0o666, 1, 3))
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	for i := range recs {
		recs[i] = cpio.MakeReproducible(recs[i])
		recs[i].Ino = uint64(i + 1)
		recs[i].MTime = s.MTime
		recs[i].NLink = 1
	}

	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	// gzip header: no name, no mtime, so it is reproducible too.
	cw := cpio.Newc.Writer(zw)
	if err := cpio.WriteRecords(cw, recs); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return zw.Close()
}

// Bytes is Write into memory.
func Bytes(s Spec) ([]byte, error) {
	var b bytes.Buffer
	if err := Write(&b, s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
