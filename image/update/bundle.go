package update

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ManifestFile is the manifest's name in a bundle directory; the release
// files sit beside it under their own names (FileNames).
const ManifestFile = "manifest"

// Why a box refuses an update. Each is wrapped with the details; agents
// report the message, tests match the kind with errors.Is.
var (
	ErrUnsigned     = errors.New("not signed")
	ErrBadSignature = errors.New("bad signature")
	ErrWrongArch    = errors.New("wrong architecture")
	ErrOldGen       = errors.New("generation not newer than the installed one")
	ErrRolledBack   = errors.New("generation rolled back on this box before")
	ErrExpired      = errors.New("manifest expired")
	ErrHash         = errors.New("file does not match the manifest")
	ErrCmdline      = errors.New("kernel command line refused")
)

// Bundle is a release: its manifest and the bytes of its files.
type Bundle struct {
	Manifest *Manifest
	Files    map[string][]byte // by FileNames
}

// NewBundle describes files (by FileNames; all three present) in an
// unsigned manifest.
func NewBundle(gen uint64, arch, release string, files map[string][]byte) (*Bundle, error) {
	m := &Manifest{Generation: gen, Arch: arch, Release: release}
	for i, name := range FileNames {
		data, ok := files[name]
		if !ok {
			return nil, fmt.Errorf("update bundle: no %s", name)
		}
		m.Files[i] = File{Name: name, Size: uint64(len(data)), SHA256: sha256.Sum256(data)}
	}
	// The encoding is the validator: what ParseManifest refuses is not
	// written either.
	if _, err := ParseManifest(m.Marshal()); err != nil {
		return nil, err
	}
	if err := CheckCmdline(string(files[FileCmdline])); err != nil {
		return nil, err
	}
	return &Bundle{Manifest: m, Files: files}, nil
}

// Sign sets the manifest's expiry to now+valid and signs it with the CA key.
func (b *Bundle) Sign(caKey ed25519.PrivateKey, caPub [ed25519.PublicKeySize]byte, now time.Time, valid time.Duration) error {
	b.Manifest.NotAfter = now.Add(valid).Truncate(time.Second).UTC()
	return b.Manifest.Sign(caKey, caPub)
}

// Write writes the bundle into dir (created if needed), each file
// atomically, the manifest last: a directory with a manifest is complete.
func (b *Bundle) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("update bundle %s: %w", dir, err)
	}
	for _, name := range FileNames {
		if err := writeFileAtomic(filepath.Join(dir, name), b.Files[name]); err != nil {
			return fmt.Errorf("update bundle %s: %w", dir, err)
		}
	}
	return WriteManifest(dir, b.Manifest)
}

// WriteManifest replaces dir/manifest.
func WriteManifest(dir string, m *Manifest) error {
	if err := writeFileAtomic(filepath.Join(dir, ManifestFile), m.Marshal()); err != nil {
		return fmt.Errorf("update bundle %s: %w", dir, err)
	}
	return nil
}

// ReadBundle reads a bundle directory and checks every file against the
// manifest (not the signature: the receiver checks that, and an admin may
// be about to sign it).
func ReadBundle(dir string) (*Bundle, error) {
	b, err := ReadBundleUnchecked(dir)
	if err != nil {
		return nil, err
	}
	if err := CheckFiles(b.Manifest, b.Files); err != nil {
		return nil, fmt.Errorf("update bundle %s: %w", dir, err)
	}
	return b, nil
}

// ReadBundleUnchecked reads a bundle directory without comparing the files
// with the manifest: for sending a bundle a box must refuse (tests), and
// for showing what is wrong with one.
func ReadBundleUnchecked(dir string) (*Bundle, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("update bundle: %w", err)
	}
	m, err := ParseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("update bundle %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	b := &Bundle{Manifest: m, Files: map[string][]byte{}}
	for _, f := range m.Files {
		p := filepath.Join(dir, f.Name)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("update bundle: %w", err)
		}
		if uint64(st.Size()) > maxFileSize[f.Name] {
			return nil, fmt.Errorf("update bundle: %s is %d bytes, more than a %s may be", p, st.Size(), f.Name)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("update bundle: %w", err)
		}
		b.Files[f.Name] = data
	}
	return b, nil
}

// Policy is what a box checks a manifest against before it downloads or
// writes anything.
type Policy struct {
	CA         [ed25519.PublicKeySize]byte // the mesh CA
	Arch       string                      // this box's GOARCH
	Installed  uint64                      // generation running or installed; the manifest must be above it
	RolledBack []uint64                    // generations that failed here before
	Now        time.Time
}

// Check refuses a manifest this box must not install: not signed by the
// mesh CA, for another architecture, not newer than what it has (rollback
// protection), one that rolled back here before, or expired.
func Check(m *Manifest, p Policy) error {
	if err := m.Verify(p.CA); err != nil {
		return err
	}
	if m.Arch != p.Arch {
		return fmt.Errorf("%s: %w: built for %s, this box is %s", m, ErrWrongArch, m.Arch, p.Arch)
	}
	if m.Generation <= p.Installed {
		return fmt.Errorf("%s: %w: this box has generation %d", m, ErrOldGen, p.Installed)
	}
	for _, g := range p.RolledBack {
		if g == m.Generation {
			return fmt.Errorf("%s: %w (publish a newer generation)", m, ErrRolledBack)
		}
	}
	if !p.Now.IsZero() && p.Now.After(m.NotAfter) {
		return fmt.Errorf("%s: %w at %s", m, ErrExpired, m.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// CheckFiles checks every file's size and SHA-256 against the manifest,
// and the command line's content.
func CheckFiles(m *Manifest, files map[string][]byte) error {
	for _, f := range m.Files {
		data, ok := files[f.Name]
		if !ok {
			return fmt.Errorf("%s: %s missing: %w", m, f.Name, ErrHash)
		}
		if uint64(len(data)) != f.Size {
			return fmt.Errorf("%s: %s is %d bytes, the manifest says %d: %w", m, f.Name, len(data), f.Size, ErrHash)
		}
		if sha256.Sum256(data) != f.SHA256 {
			return fmt.Errorf("%s: %s: sha256 differs from the manifest's %s: %w", m, f.Name, f.Hex(), ErrHash)
		}
	}
	return CheckCmdline(string(files[FileCmdline]))
}

// CheckCmdline refuses a kernel command line that could break the loader
// entry it is written into (anything but printable ASCII and spaces, which
// includes newlines that would add entry keys) or that sets what the
// installer and PID 1 own: the slot, and a join token (never on a command
// line).
func CheckCmdline(c string) error {
	c = strings.TrimSuffix(c, "\n")
	for i := 0; i < len(c); i++ {
		if c[i] < ' ' || c[i] >= 0x7f {
			return fmt.Errorf("%w: byte %d is %q (want printable ASCII on one line)", ErrCmdline, i, c[i])
		}
	}
	for _, f := range strings.Fields(c) {
		k, _, _ := strings.Cut(f, "=")
		if k == "meshnode.slot" || k == "meshnode.token" {
			return fmt.Errorf("%w: %s= is set by the installer or refused", ErrCmdline, k)
		}
	}
	return nil
}

// writeFileAtomic writes path through a temporary file, fsync and rename.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
