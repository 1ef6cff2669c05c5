// Package update is the appliance's A/B update: the CA-signed manifest that
// describes one release (kernel, initramfs, kernel command line), the
// bundle directory that `meshnode image build` writes and `meshnode update`
// sends, the checks a box makes before it writes anything, the installer
// that writes the inactive slot and its boot-counting loader entry, and the
// record on the perm partition that makes a release's generation the floor
// for the next one and tells a trial boot from a rollback.
//
// It is pure logic over a directory (the mounted ESP, a temporary
// directory in tests) and a state file: no network, no NATS. The update
// agent (mesh/updater) moves bundles over the mesh and calls it.
package update

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// ManifestVersion is the only manifest encoding this code reads.
const ManifestVersion = 1

// manifestDomain separates manifest signatures from every other signature
// the mesh CA makes (tickets, revocations, certificates).
const manifestDomain = "meshnode update manifest v1"

// The files of a release, in the order the manifest lists them. A slot is
// exactly these: the loader entry is written from the command line, the
// kernel and initramfs are copied to meshnode/<slot>/ on the ESP.
const (
	FileKernel    = "vmlinuz"
	FileInitramfs = "initrd.img"
	FileCmdline   = "cmdline"
)

// FileNames lists the release files in manifest order.
var FileNames = [...]string{FileKernel, FileInitramfs, FileCmdline}

// Size limits of the release files. The ESP (256 MiB by default) holds two
// slots; a file beyond these is refused before anything is downloaded.
const (
	MaxKernelSize    = 64 << 20
	MaxInitramfsSize = 192 << 20
	MaxCmdlineSize   = 2048
	MaxVersionLen    = 64
	MaxArchLen       = 16
)

var maxFileSize = map[string]uint64{FileKernel: MaxKernelSize, FileInitramfs: MaxInitramfsSize, FileCmdline: MaxCmdlineSize}

// File is one release file as the manifest describes it.
type File struct {
	Name   string
	Size   uint64
	SHA256 [sha256.Size]byte
}

// Manifest describes one release and is signed by the mesh CA.
//
// Wire format v1 (big-endian):
//
//	version    u8 = 1
//	generation u64            strictly increasing; a box refuses one not above what it runs
//	not_after  i64            unix seconds; a box refuses an expired manifest (0 until signed)
//	arch       u8 len | bytes GOARCH of the binaries ("amd64")
//	release    u8 len | bytes meshnode version string, printable ASCII
//	files      u8 count = 3, each: name u8 len | bytes, size u64, sha256 [32]
//	           in the order vmlinuz, initrd.img, cmdline
//	ca_key_id  [8]            which CA signed (identity.CAPublic.KeyID)
//	signature  [64]           Ed25519 by the CA over
//	                          "meshnode update manifest v1" || every byte before the signature
//
// An unsigned manifest (what the image builder writes before an admin
// signs it) has an all-zero key id and signature; it decodes, and Verify
// refuses it.
type Manifest struct {
	Generation uint64
	NotAfter   time.Time
	Arch       string
	Release    string
	Files      [3]File
	CAKeyID    [8]byte
	Signature  [ed25519.SignatureSize]byte
}

func (m *Manifest) body() []byte {
	b := []byte{ManifestVersion}
	b = binary.BigEndian.AppendUint64(b, m.Generation)
	var notAfter int64 // 0: not set yet (an unsigned manifest)
	if !m.NotAfter.IsZero() {
		notAfter = m.NotAfter.Unix()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(notAfter))
	b = append(b, byte(len(m.Arch)))
	b = append(b, m.Arch...)
	b = append(b, byte(len(m.Release)))
	b = append(b, m.Release...)
	b = append(b, byte(len(m.Files)))
	for _, f := range m.Files {
		b = append(b, byte(len(f.Name)))
		b = append(b, f.Name...)
		b = binary.BigEndian.AppendUint64(b, f.Size)
		b = append(b, f.SHA256[:]...)
	}
	return append(b, m.CAKeyID[:]...)
}

func (m *Manifest) signedBytes() []byte { return append([]byte(manifestDomain), m.body()...) }

// Marshal encodes the manifest.
func (m *Manifest) Marshal() []byte { return append(m.body(), m.Signature[:]...) }

// Signed reports whether the manifest carries a signature (not whether it
// verifies).
func (m *Manifest) Signed() bool {
	return m.CAKeyID != [8]byte{} || m.Signature != [ed25519.SignatureSize]byte{}
}

// Sign signs the manifest with the CA's private key; caPub is its public
// half (its key id goes into the manifest).
func (m *Manifest) Sign(caKey ed25519.PrivateKey, caPub [ed25519.PublicKeySize]byte) error {
	if !bytes.Equal(caKey.Public().(ed25519.PublicKey), caPub[:]) {
		return errors.New("update manifest: signing key does not match the CA public key")
	}
	m.CAKeyID = keyID(caPub)
	copy(m.Signature[:], ed25519.Sign(caKey, m.signedBytes()))
	return nil
}

// Verify checks the CA signature. caPub is the mesh CA's public key. Its
// errors wrap ErrUnsigned or ErrBadSignature.
func (m *Manifest) Verify(caPub [ed25519.PublicKeySize]byte) error {
	if !m.Signed() {
		return fmt.Errorf("%s: %w (sign it on an admin node: meshnode update sign BUNDLE)", m, ErrUnsigned)
	}
	if m.CAKeyID != keyID(caPub) {
		return fmt.Errorf("%s: %w: signed by another CA (key id %x, this mesh's is %x)", m, ErrBadSignature, m.CAKeyID, keyID(caPub))
	}
	if !ed25519.Verify(caPub[:], m.signedBytes(), m.Signature[:]) {
		return fmt.Errorf("%s: %w: the mesh CA's signature does not verify over these bytes", m, ErrBadSignature)
	}
	return nil
}

// keyID is identity.CAPublic.KeyID, repeated here so that the manifest
// (read by the image builder too) does not depend on identity; the golden
// test pins both to the same value.
func keyID(pub [ed25519.PublicKeySize]byte) [8]byte {
	s := sha256.Sum256(pub[:])
	var id [8]byte
	copy(id[:], s[:8])
	return id
}

// File returns the manifest's entry for name.
func (m *Manifest) File(name string) (File, bool) {
	for _, f := range m.Files {
		if f.Name == name {
			return f, true
		}
	}
	return File{}, false
}

// TotalSize is the sum of the file sizes (what a download moves).
func (m *Manifest) TotalSize() uint64 {
	var n uint64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// String names the release for messages: "update generation 2 (v1.2.0)".
func (m *Manifest) String() string {
	return fmt.Sprintf("update generation %d (%s)", m.Generation, m.Release)
}

// ParseManifest decodes a manifest strictly: every field bounded and
// well-formed, the three files by name in order, nothing trailing. It does
// not verify the signature.
func ParseManifest(b []byte) (*Manifest, error) {
	s := cryptobyte.String(b)
	var version uint8
	if !s.ReadUint8(&version) {
		return nil, errors.New("update manifest: empty")
	}
	if version != ManifestVersion {
		return nil, fmt.Errorf("update manifest: unknown version %d (this build reads %d)", version, ManifestVersion)
	}
	var (
		m             Manifest
		notAfter      uint64
		arch, release cryptobyte.String
		count         uint8
	)
	if !s.ReadUint64(&m.Generation) || !s.ReadUint64(&notAfter) ||
		!s.ReadUint8LengthPrefixed(&arch) || !s.ReadUint8LengthPrefixed(&release) || !s.ReadUint8(&count) {
		return nil, errors.New("update manifest: truncated")
	}
	if m.Generation == 0 {
		return nil, errors.New("update manifest: generation 0 (generations start at 1)")
	}
	if int64(notAfter) < 0 {
		return nil, errors.New("update manifest: not_after out of range")
	}
	if err := checkToken("arch", arch, MaxArchLen, isArchByte); err != nil {
		return nil, err
	}
	if err := checkToken("release", release, MaxVersionLen, isPrintable); err != nil {
		return nil, err
	}
	if int(count) != len(FileNames) {
		return nil, fmt.Errorf("update manifest: %d files, want %d (%s, %s, %s)", count, len(FileNames), FileKernel, FileInitramfs, FileCmdline)
	}
	for i, want := range FileNames {
		var name cryptobyte.String
		f := &m.Files[i]
		if !s.ReadUint8LengthPrefixed(&name) || !s.ReadUint64(&f.Size) || !s.CopyBytes(f.SHA256[:]) {
			return nil, errors.New("update manifest: truncated")
		}
		if string(name) != want {
			return nil, fmt.Errorf("update manifest: file %d is %q, want %q", i+1, name, want)
		}
		f.Name = want
		if f.Size == 0 || f.Size > maxFileSize[want] {
			return nil, fmt.Errorf("update manifest: %s size %d, want 1 to %d bytes", want, f.Size, maxFileSize[want])
		}
	}
	if !s.CopyBytes(m.CAKeyID[:]) || !s.CopyBytes(m.Signature[:]) {
		return nil, errors.New("update manifest: truncated")
	}
	if len(s) != 0 {
		return nil, fmt.Errorf("update manifest: %d trailing bytes", len(s))
	}
	if notAfter != 0 {
		m.NotAfter = time.Unix(int64(notAfter), 0).UTC()
	}
	m.Arch, m.Release = string(arch), string(release)
	return &m, nil
}

func checkToken(field string, v []byte, max int, ok func(byte) bool) error {
	if len(v) == 0 || len(v) > max {
		return fmt.Errorf("update manifest: %s is %d bytes, want 1 to %d", field, len(v), max)
	}
	for _, c := range v {
		if !ok(c) {
			return fmt.Errorf("update manifest: %s %q has a byte outside its alphabet", field, v)
		}
	}
	return nil
}

func isArchByte(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' }

// isPrintable is printable ASCII without space: a version string ends up
// in loader entries and console lines.
func isPrintable(c byte) bool { return c > ' ' && c < 0x7f }

// Hex is a file's digest as lowercase hex, for messages and JSON.
func (f File) Hex() string { return hex.EncodeToString(f.SHA256[:]) }
