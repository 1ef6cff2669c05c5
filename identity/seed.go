package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// SeedSize is the size of a node's only secret.
const SeedSize = 32

// Seed is a node's only secret: every key the node uses derives from it.
type Seed [SeedSize]byte

// String never reveals the seed (it may end up in a log line by accident).
func (Seed) String() string { return "identity.Seed(redacted)" }

// GoString never reveals the seed either.
func (s Seed) GoString() string { return s.String() }

// Format prints the redacted form for every verb: without it fmt would print
// the bytes for %d (and inside structs for any verb), bypassing String.
func (s Seed) Format(f fmt.State, verb rune) { io.WriteString(f, s.String()) }

// NewSeed returns a fresh random seed.
func NewSeed() (Seed, error) {
	var s Seed
	if _, err := rand.Read(s[:]); err != nil {
		return Seed{}, fmt.Errorf("generate seed: %w", err)
	}
	return s, nil
}

// The seed file is text so that an operator can tell it apart from other
// files, with a checksum so that corruption is an error rather than a
// silently different identity:
//
//	meshnode identity v1
//	<64 hex digits of the seed><8 hex digits: first 4 bytes of SHA-256(seed)>
const seedFileHeader = "meshnode identity v1\n"

// MarshalSeedFile encodes a seed in the seed file format.
func MarshalSeedFile(s Seed) []byte {
	sum := sha256.Sum256(s[:])
	var b bytes.Buffer
	b.WriteString(seedFileHeader)
	b.WriteString(hex.EncodeToString(s[:]))
	b.WriteString(hex.EncodeToString(sum[:4]))
	b.WriteByte('\n')
	return b.Bytes()
}

// ParseSeedFile decodes the seed file format strictly.
func ParseSeedFile(data []byte) (Seed, error) {
	rest, ok := bytes.CutPrefix(data, []byte(seedFileHeader))
	if !ok {
		if len(data) == 0 {
			return Seed{}, errors.New("empty file")
		}
		return Seed{}, errors.New("not a meshnode identity file (bad or unknown-version header)")
	}
	const want = 2*SeedSize + 8 + 1
	if len(rest) != want {
		return Seed{}, fmt.Errorf("truncated or padded: %d bytes after the header, want %d", len(rest), want)
	}
	if rest[want-1] != '\n' {
		return Seed{}, errors.New("missing final newline")
	}
	raw := make([]byte, SeedSize+4)
	if _, err := hex.Decode(raw, rest[:want-1]); err != nil {
		return Seed{}, fmt.Errorf("not hex: %w", err)
	}
	var s Seed
	copy(s[:], raw[:SeedSize])
	sum := sha256.Sum256(s[:])
	if !bytes.Equal(sum[:4], raw[SeedSize:]) {
		return Seed{}, errors.New("checksum mismatch: the file is corrupt")
	}
	return s, nil
}

// CreateSeed generates a seed and stores it at path (mode 0600). It refuses
// to replace an existing file: an identity is never regenerated silently.
func CreateSeed(path string) (Seed, error) {
	s, err := NewSeed()
	if err != nil {
		return Seed{}, err
	}
	if err := writeFileExclusive(path, MarshalSeedFile(s), 0o600); err != nil {
		return Seed{}, fmt.Errorf("identity: %w", err)
	}
	return s, nil
}

// LoadSeed reads the seed at path. A missing, corrupt, truncated or
// group/world-accessible file is an error naming the file; nothing is ever
// regenerated here.
func LoadSeed(path string) (Seed, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Seed{}, fmt.Errorf("identity file %s does not exist (run meshnode init or join first): %w", path, fs.ErrNotExist)
		}
		return Seed{}, fmt.Errorf("identity file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Seed{}, fmt.Errorf("identity file %s: %w", path, err)
	}
	if err := checkPrivate(path, fi); err != nil {
		return Seed{}, fmt.Errorf("identity file %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Seed{}, fmt.Errorf("identity file %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	// A valid file is under 200 bytes; the limit only bounds what a wrong
	// file makes us read.
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return Seed{}, fmt.Errorf("identity file %s: %w", path, err)
	}
	s, err := ParseSeedFile(data)
	if err != nil {
		return Seed{}, fmt.Errorf("identity file %s: %w", path, err)
	}
	return s, nil
}

// SaveSeed stores a seed generated earlier (with NewSeed) at path, 0600,
// refusing to replace an existing file. A joiner generates its seed in
// memory and saves it only once enrollment succeeded, so a refused join
// leaves nothing behind.
func SaveSeed(path string, s Seed) error {
	if err := writeFileExclusive(path, MarshalSeedFile(s), 0o600); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}
