// Package kernel fetches the kernel for the appliance image: Debian's
// generic amd64 kernel, resolved through the linux-image-amd64 meta-package
// on every build (so security updates flow in), downloaded with apt and
// checked against apt's own SHA256; or, as a fallback, the gokrazy kernel Go
// module, which has every driver built in.
//
// Fetch returns a Kernel: the vmlinuz, the list of built-in modules, and a
// directory of loadable modules the builder picks from.
package kernel

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/meshnode/meshnode/image/kmod"
)

// MetaPackage is the Debian package that always depends on the current kernel.
const MetaPackage = "linux-image-amd64"

// GokrazyModule is the Go module of the fallback kernel.
const GokrazyModule = "github.com/gokrazy/kernel.amd64"

// Kernel is a fetched, verified kernel.
type Kernel struct {
	Source     string // "debian" or "gokrazy"
	Package    string // e.g. linux-image-6.1.0-56-amd64, or the Go module path
	Version    string // package or module version
	Release    string // uname -r, the /lib/modules directory name
	SHA256     string // of the downloaded .deb (debian) or the module zip (gokrazy)
	Vmlinuz    string // path of the kernel image
	ModulesDir string // path of lib/modules/<release>; empty when there are none
	Builtin    map[string]bool
}

// Options says where to cache downloads.
type Options struct {
	CacheDir string // downloads and unpacked kernels are kept here between builds
	Log      *slog.Logger
}

// Fetch gets the kernel from source "debian", "gokrazy", or "auto" (Debian,
// falling back to gokrazy when apt cannot provide it).
func Fetch(ctx context.Context, source string, o Options) (*Kernel, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	switch source {
	case "debian":
		return FetchDebian(ctx, o)
	case "gokrazy":
		return FetchGokrazy(ctx, o)
	case "auto", "":
		k, err := FetchDebian(ctx, o)
		if err == nil {
			return k, nil
		}
		o.Log.Warn("Debian kernel unavailable, falling back to the gokrazy kernel", "err", err)
		return FetchGokrazy(ctx, o)
	}
	return nil, fmt.Errorf("kernel source %q: want debian, gokrazy or auto", source)
}

// pkgInfo is the part of an apt-cache show record we use.
type pkgInfo struct {
	Package, Version, SHA256, Depends, Filename string
}

func aptShow(ctx context.Context, pkg string) (pkgInfo, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", pkg).Output()
	if err != nil {
		return pkgInfo{}, fmt.Errorf("apt-cache show %s: %w (run apt-get update first)", pkg, cmdErr(err))
	}
	return parseAptRecord(out), nil
}

// parseAptRecord reads the first stanza of a Debian control record.
func parseAptRecord(b []byte) pkgInfo {
	var p pkgInfo
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch k {
		case "Package":
			p.Package = v
		case "Version":
			p.Version = v
		case "SHA256":
			p.SHA256 = v
		case "Depends":
			p.Depends = v
		case "Filename":
			p.Filename = v
		}
	}
	return p
}

// ResolveMeta returns the concrete kernel package the meta-package depends on.
func ResolveMeta(depends string) (pkg, version string, err error) {
	for _, d := range strings.Split(depends, ",") {
		d = strings.TrimSpace(strings.Split(d, "|")[0])
		name, rest, _ := strings.Cut(d, " ")
		if strings.HasPrefix(name, "linux-image-") {
			v := strings.TrimSpace(rest)
			v = strings.TrimPrefix(v, "(")
			v = strings.TrimSuffix(v, ")")
			v = strings.TrimSpace(strings.TrimPrefix(v, "="))
			return name, v, nil
		}
	}
	return "", "", fmt.Errorf("%s: no linux-image-* in Depends %q", MetaPackage, depends)
}

// FetchDebian resolves, downloads, verifies and unpacks the Debian kernel.
func FetchDebian(ctx context.Context, o Options) (*Kernel, error) {
	meta, err := aptShow(ctx, MetaPackage)
	if err != nil {
		return nil, err
	}
	pkg, _, err := ResolveMeta(meta.Depends)
	if err != nil {
		return nil, err
	}
	info, err := aptShow(ctx, pkg)
	if err != nil {
		return nil, err
	}
	if info.SHA256 == "" || info.Version == "" {
		return nil, fmt.Errorf("apt-cache show %s: no Version/SHA256", pkg)
	}
	o.Log.Info("kernel resolved", "meta", MetaPackage, "package", pkg, "version", info.Version)

	dlDir := filepath.Join(o.CacheDir, "deb")
	if err := os.MkdirAll(dlDir, 0o755); err != nil {
		return nil, err
	}
	deb := filepath.Join(dlDir, filepath.Base(info.Filename))
	if sum, err := fileSHA256(deb); err != nil || sum != info.SHA256 {
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg+"="+info.Version)
		cmd.Dir = dlDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("apt-get download %s=%s: %w: %s", pkg, info.Version, err, lastLine(out))
		}
	}
	sum, err := fileSHA256(deb)
	if err != nil {
		return nil, fmt.Errorf("downloaded kernel: %w", err)
	}
	if sum != info.SHA256 {
		return nil, fmt.Errorf("%s: sha256 %s, apt says %s", deb, sum, info.SHA256)
	}

	dir := filepath.Join(o.CacheDir, pkg+"_"+info.Version)
	if _, err := os.Stat(filepath.Join(dir, ".complete-"+sum)); err != nil {
		if err := unpackDeb(ctx, deb, dir); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, ".complete-"+sum), nil, 0o644); err != nil {
			return nil, err
		}
	}
	return fromTree("debian", pkg, info.Version, sum, dir)
}

// unpackDeb extracts boot/ and the modules tree of a kernel .deb into dir.
// dpkg-deb decodes the package (it knows every compression Debian uses);
// Go writes the files so the result does not depend on the host's dpkg database.
func unpackDeb(ctx context.Context, deb, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dpkg-deb: %w", err)
	}
	terr := extractTar(stdout, dir)
	_, _ = io.Copy(io.Discard, stdout)
	werr := cmd.Wait()
	if terr != nil {
		return fmt.Errorf("%s: %w", deb, terr)
	}
	if werr != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, werr, stderr.String())
	}
	return nil
}

func extractTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")
		name = strings.TrimPrefix(name, "usr/") // merged-/usr packages keep modules in usr/lib
		if !strings.HasPrefix(name, "boot/") && !strings.HasPrefix(name, "lib/modules/") {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
}

// fromTree builds a Kernel from an unpacked tree holding boot/vmlinuz-* (or
// vmlinuz) and lib/modules/<release>/.
func fromTree(source, pkg, version, sum, dir string) (*Kernel, error) {
	k := &Kernel{Source: source, Package: pkg, Version: version, SHA256: sum, Builtin: map[string]bool{}}
	rels, _ := filepath.Glob(filepath.Join(dir, "lib/modules/*"))
	if len(rels) != 1 {
		return nil, fmt.Errorf("%s: want one lib/modules/<release>, found %d", dir, len(rels))
	}
	k.Release = filepath.Base(rels[0])
	k.ModulesDir = rels[0]
	for _, cand := range []string{filepath.Join(dir, "boot", "vmlinuz-"+k.Release), filepath.Join(dir, "vmlinuz")} {
		if _, err := os.Stat(cand); err == nil {
			k.Vmlinuz = cand
			break
		}
	}
	if k.Vmlinuz == "" {
		return nil, fmt.Errorf("%s: no vmlinuz for %s", dir, k.Release)
	}
	if b, err := os.ReadFile(filepath.Join(k.ModulesDir, "modules.builtin")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				k.Builtin[kmod.Name(l)] = true
			}
		}
	}
	return k, nil
}

// FetchGokrazy downloads the gokrazy kernel module with the go command (which
// checks it against the checksum database) and uses its vmlinuz.
func FetchGokrazy(ctx context.Context, o Options) (*Kernel, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", GokrazyModule+"@latest")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download %s: %w", GokrazyModule, cmdErr(err))
	}
	var m struct{ Version, Dir, Zip, Sum, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, fmt.Errorf("go mod download %s: %w", GokrazyModule, err)
	}
	if m.Error != "" {
		return nil, fmt.Errorf("go mod download %s: %s", GokrazyModule, m.Error)
	}
	sum, err := fileSHA256(m.Zip)
	if err != nil {
		return nil, err
	}
	o.Log.Info("kernel resolved", "module", GokrazyModule, "version", m.Version, "sum", m.Sum)
	k, err := fromTree("gokrazy", GokrazyModule, m.Version, sum, m.Dir)
	if err != nil {
		return nil, err
	}
	// Everything the appliance needs is built in: there is nothing to load.
	k.ModulesDir = ""
	return k, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func cmdErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, lastLine(ee.Stderr))
	}
	return err
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
