package identity

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCreateLoadSeed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "identity.seed")
	s, err := CreateSeed(path)
	if err != nil {
		t.Fatalf("CreateSeed: %v", err)
	}
	if s == (Seed{}) {
		t.Fatal("CreateSeed returned the zero seed")
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Errorf("seed file mode %#o, want 0600", m)
	}
	b, _ := os.ReadFile(path)
	if !bytes.Equal(b, MarshalSeedFile(s)) {
		t.Errorf("seed file holds %q, want MarshalSeedFile output", b)
	}
	got, err := LoadSeed(path)
	if err != nil {
		t.Fatalf("LoadSeed: %v", err)
	}
	if got != s {
		t.Errorf("LoadSeed returned a different seed")
	}
	if FromSeed(got).Public() != FromSeed(s).Public() {
		t.Errorf("identity changed across save/load")
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %q, want only the seed (no temp files)", names)
	}

	// Two fresh seeds differ.
	s2, err := CreateSeed(filepath.Join(dir, "other.seed"))
	if err != nil {
		t.Fatal(err)
	}
	if s2 == s {
		t.Errorf("two CreateSeed calls returned the same seed")
	}
}

func TestCreateSeedRefusesExisting(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content []byte
		mode    os.FileMode
	}{
		{"valid seed", MarshalSeedFile(seedCounting()), 0o600},
		{"empty file", nil, 0o600},
		{"garbage, readable", []byte("not a seed\n"), 0o644},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "identity.seed")
			if err := os.WriteFile(path, tc.content, tc.mode); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			_, err := CreateSeed(path)
			if !errors.Is(err, fs.ErrExist) {
				t.Fatalf("CreateSeed over an existing file: err = %v, want fs.ErrExist", err)
			}
			wantErr(t, err, path, "refusing to overwrite")
			if after := snapshot(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("CreateSeed changed the directory:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

func TestLoadSeedErrors(t *testing.T) {
	good := MarshalSeedFile(seedCounting())
	header := []byte(seedFileHeader)
	corrupt := bytes.Clone(good)
	// Change one seed digit ('1' → '0'): still hex, but the checksum no
	// longer matches.
	i := len(header) + 1
	if corrupt[i] != '1' {
		t.Fatalf("test setup: byte %d is %q", i, corrupt[i])
	}
	corrupt[i] = '0'
	badSum := bytes.Clone(good)
	badSum[len(badSum)-2] ^= 1 // last checksum digit 'e' → 'd'

	for _, tc := range []struct {
		name    string
		content []byte // nil: no file at all
		mode    os.FileMode
		want    string
	}{
		{"missing", nil, 0, "does not exist"},
		{"empty", []byte{}, 0o600, "empty"},
		{"header only", header, 0o600, "truncated"},
		{"truncated", good[:len(good)-10], 0o600, "truncated"},
		{"no final newline", good[:len(good)-1], 0o600, "truncated"},
		{"padded newline", append(bytes.Clone(good), '\n'), 0o600, "padded"},
		{"padded large", append(bytes.Clone(good), bytes.Repeat([]byte("x"), 10000)...), 0o600, "padded"},
		{"corrupt seed digit", corrupt, 0o600, "checksum"},
		{"corrupt checksum digit", badSum, 0o600, "checksum"},
		{"not hex", append(bytes.Clone(header), append(bytes.Repeat([]byte("g"), 72), '\n')...), 0o600, "not hex"},
		{"final byte not newline", append(bytes.Clone(good[:len(good)-1]), ' '), 0o600, "newline"},
		{"unknown version", bytes.Replace(good, []byte("v1"), []byte("v2"), 1), 0o600, "header"},
		{"other file", []byte("-----BEGIN PRIVATE KEY-----\n"), 0o600, "not a meshnode identity file"},
		{"world-readable", good, 0o644, "chmod 600"},
		{"group-readable", good, 0o640, "chmod 600"},
		{"group-writable", good, 0o620, "permissions"},
		{"other-readable only", good, 0o604, "permissions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "identity.seed")
			if tc.content != nil {
				if err := os.WriteFile(path, tc.content, tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.mode); err != nil { // umask-proof
					t.Fatal(err)
				}
			}
			s, err := LoadSeed(path)
			wantErr(t, err, path, tc.want)
			if s != (Seed{}) {
				t.Errorf("a failed LoadSeed returned a non-zero seed")
			}
			if tc.content == nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing file: error %v is not fs.ErrNotExist", err)
			}
			// The error must not quote the seed it could not accept.
			seed := seedCounting()
			if strings.Contains(err.Error(), hex.EncodeToString(seed[:8])) {
				t.Errorf("error reveals seed material: %v", err)
			}
		})
	}
}

// TestLoadSeedNotAFile: a directory where the seed should be is reported as
// such, not as an empty file.
func TestLoadSeedNotAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.seed")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := LoadSeed(path)
	wantErr(t, err, path, "not a regular file")
}

// TestLoadSeedPrivateModesAccepted: owner-only modes load.
func TestLoadSeedPrivateModesAccepted(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o400} {
		path := filepath.Join(t.TempDir(), "identity.seed")
		if err := os.WriteFile(path, MarshalSeedFile(seedOf(7)), mode); err != nil {
			t.Fatal(err)
		}
		if s, err := LoadSeed(path); err != nil || s != seedOf(7) {
			t.Errorf("mode %#o: LoadSeed = %v, want the seed", mode, err)
		}
	}
}

func TestParseSeedFileRoundTrip(t *testing.T) {
	for range 20 {
		s, err := NewSeed()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseSeedFile(MarshalSeedFile(s))
		if err != nil || got != s {
			t.Fatalf("round trip failed: %v", err)
		}
	}
}

func TestSaveSeed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "identity.seed")
	s := seedCounting()
	if err := SaveSeed(path, s); err != nil {
		t.Fatalf("SaveSeed: %v", err)
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Errorf("mode %#o, want 0600", m)
	}
	if b, _ := os.ReadFile(path); string(b) != goldenKeys[1].seedFile {
		t.Errorf("SaveSeed wrote %q, want the golden seed file", b)
	}
	if got, err := LoadSeed(path); err != nil || got != s {
		t.Errorf("LoadSeed after SaveSeed: %v", err)
	}
	// Never over an existing identity.
	before := snapshot(t, dir)
	err := SaveSeed(path, seedOf(9))
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("SaveSeed over an existing file: %v, want fs.ErrExist", err)
	}
	wantErr(t, err, path)
	if after := snapshot(t, dir); !equalMaps(before, after) {
		t.Errorf("a refused SaveSeed changed the directory")
	}
}
