// Package kmod reads Linux kernel module metadata and orders modules for
// loading. Debian's kernel package ships no modules.dep, so the order is
// computed from each module's own .modinfo section (depends= and the
// softdep= "pre:" list), the same data depmod would use.
package kmod

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Info is what .modinfo says about one module.
type Info struct {
	Name    string   // module name with '_' (the name the kernel uses)
	Depends []string // hard dependencies
	PreDeps []string // softdep "pre:" modules (may be aliases or optional)
	Aliases []string
}

// Name returns the kernel's name for a module file: base name without
// .ko[.xz|.zst|.gz], with '-' folded to '_'.
func Name(file string) string {
	b := path.Base(file)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, ext)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// IsModule reports whether file looks like a kernel module.
func IsModule(file string) bool {
	for _, ext := range []string{"", ".xz", ".zst", ".gz"} {
		if strings.HasSuffix(file, ".ko"+ext) {
			return true
		}
	}
	return false
}

// Decompress returns the plain ELF bytes of a module file (.ko, .ko.xz,
// .ko.zst or .ko.gz); finit_module wants uncompressed data unless the kernel
// was built to decompress, and an uncompressed initramfs compresses better.
func Decompress(file string, data []byte) ([]byte, error) {
	var r io.Reader
	switch {
	case strings.HasSuffix(file, ".xz"):
		x, err := xz.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		r = x
	case strings.HasSuffix(file, ".zst"):
		z, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		defer z.Close()
		r = z
	case strings.HasSuffix(file, ".gz"):
		g, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		r = g
	default:
		return data, nil
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

// ParseELF reads the .modinfo section of an uncompressed module.
func ParseELF(file string, data []byte) (Info, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", file, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return Info{}, fmt.Errorf("%s: no .modinfo section", file)
	}
	raw, err := s.Data()
	if err != nil {
		return Info{}, fmt.Errorf("%s: .modinfo: %w", file, err)
	}
	info := ParseModinfo(raw)
	if info.Name == "" {
		info.Name = Name(file)
	}
	return info, nil
}

// ParseModinfo parses the NUL-separated key=value strings of a .modinfo section.
func ParseModinfo(raw []byte) Info {
	var info Info
	for _, kv := range bytes.Split(raw, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			info.Name = v
		case "depends":
			info.Depends = append(info.Depends, splitList(v, ",")...)
		case "alias":
			info.Aliases = append(info.Aliases, v)
		case "softdep":
			// "pre: a b post: c"
			pre := false
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						info.PreDeps = append(info.PreDeps, w)
					}
				}
			}
		}
	}
	return info
}

func splitList(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.ReplaceAll(p, "-", "_"))
		}
	}
	return out
}

// Set is every module of a kernel, by name.
type Set struct {
	mods    map[string]Info
	aliases map[string][]string // alias (exact, no wildcard) -> module names
}

// NewSet indexes infos.
func NewSet(infos []Info) *Set {
	s := &Set{mods: map[string]Info{}, aliases: map[string][]string{}}
	for _, in := range infos {
		s.mods[in.Name] = in
		for _, a := range in.Aliases {
			if !strings.ContainsAny(a, "*?[") {
				s.aliases[a] = append(s.aliases[a], in.Name)
			}
		}
	}
	return s
}

// Has reports whether the set has a module of that name.
func (s *Set) Has(name string) bool { _, ok := s.mods[name]; return ok }

// resolve maps a softdep word (module name or alias such as "crc32c") to modules.
func (s *Set) resolve(w string) []string {
	n := strings.ReplaceAll(w, "-", "_")
	if s.Has(n) {
		return []string{n}
	}
	m := append([]string(nil), s.aliases[w]...)
	sort.Strings(m)
	return m
}

// ErrMissing is wrapped when a wanted module or a hard dependency is absent.
var ErrMissing = errors.New("module not found")

// Order returns the wanted modules and everything they need, each after its
// dependencies. A wanted name that is not a module is an error unless it is
// listed in builtin (the kernel has it compiled in). Hard dependencies must
// exist; softdep pre-modules are added when present. Ties are broken by name
// so the result is deterministic.
func (s *Set) Order(want []string, builtin map[string]bool) ([]string, error) {
	var out []string
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var visit func(n string, chain []string) error
	visit = func(n string, chain []string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("dependency cycle: %s -> %s", strings.Join(chain, " -> "), n)
		case 2:
			return nil
		}
		in, ok := s.mods[n]
		if !ok {
			return fmt.Errorf("%s (needed by %s): %w", n, strings.Join(chain, " -> "), ErrMissing)
		}
		state[n] = 1
		deps := append([]string(nil), in.Depends...)
		sort.Strings(deps)
		for _, d := range deps {
			if err := visit(d, append(chain, n)); err != nil {
				return err
			}
		}
		var pre []string
		for _, w := range in.PreDeps {
			pre = append(pre, s.resolve(w)...)
		}
		sort.Strings(pre)
		for _, d := range pre {
			if state[d] == 1 {
				continue // a soft dependency never makes a cycle fatal
			}
			if err := visit(d, append(chain, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		out = append(out, n)
		return nil
	}
	w := append([]string(nil), want...)
	sort.Strings(w)
	for _, n := range w {
		n = strings.ReplaceAll(n, "-", "_")
		if !s.Has(n) && builtin[n] {
			continue
		}
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Module is one module chosen for the initramfs, uncompressed.
type Module struct {
	Name string
	File string // path relative to the modules directory, compression suffix dropped
	Data []byte
}

// Select reads every module under dir (a lib/modules/<release> tree), and
// returns want plus their dependencies in load order. Names in builtin that
// are not modules are skipped (compiled into the kernel).
func Select(dir string, want []string, builtin map[string]bool) ([]Module, error) {
	var infos []Info
	paths := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !IsModule(p) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if data, err = Decompress(p, data); err != nil {
			return err
		}
		info, err := ParseELF(p, data)
		if err != nil {
			return err
		}
		infos = append(infos, info)
		paths[info.Name] = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	order, err := NewSet(infos).Order(want, builtin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	mods := make([]Module, 0, len(order))
	for _, n := range order {
		p := paths[n]
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if data, err = Decompress(p, data); err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(dir, p)
		for _, ext := range []string{".xz", ".zst", ".gz"} {
			rel = strings.TrimSuffix(rel, ext)
		}
		mods = append(mods, Module{Name: n, File: filepath.ToSlash(rel), Data: data})
	}
	return mods, nil
}
