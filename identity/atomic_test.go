package identity

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, tc := range []struct {
		data string
		mode os.FileMode
	}{
		{"first\n", 0o600},
		{"second, longer than the first\n", 0o644},
		{"", 0o640},
		{"x", 0o400},
	} {
		if err := WriteFileAtomic(path, []byte(tc.data), tc.mode); err != nil {
			t.Fatalf("WriteFileAtomic(%q, %#o): %v", tc.data, tc.mode, err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != tc.data {
			t.Errorf("file holds %q, %v; want %q", got, err, tc.data)
		}
		// The mode is exact, whatever the umask and the previous mode.
		if m := fileMode(t, path); m != tc.mode {
			t.Errorf("mode %#o, want %#o", m, tc.mode)
		}
		if names := dirEntries(t, dir); !slices.Equal(names, []string{"f"}) {
			t.Errorf("directory holds %q after a write, want only f", names)
		}
	}
}

func TestWriteFileAtomicFailures(t *testing.T) {
	dir := t.TempDir()
	// Replacing a non-empty directory fails at the rename, after the temp
	// file was written: it must be removed.
	target := filepath.Join(dir, "occupied")
	if err := os.MkdirAll(filepath.Join(target, "child"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := WriteFileAtomic(target, []byte("data"), 0o600)
	wantErr(t, err, target)
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"occupied"}) {
		t.Errorf("after a failed write the directory holds %q, want only the original entry", names)
	}

	// A missing directory: an error naming the path, nothing created.
	missing := filepath.Join(dir, "nope", "f")
	wantErr(t, WriteFileAtomic(missing, []byte("x"), 0o600), missing)
	if _, err := os.Stat(filepath.Dir(missing)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFileAtomic created the missing directory")
	}
}

func TestWriteFileExclusive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := writeFileExclusive(path, []byte("one"), 0o600); err != nil {
		t.Fatalf("writeFileExclusive: %v", err)
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Errorf("mode %#o, want 0600", m)
	}
	err := writeFileExclusive(path, []byte("two"), 0o644)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second writeFileExclusive: %v, want fs.ErrExist", err)
	}
	wantErr(t, err, path, "refusing to overwrite")
	if b, _ := os.ReadFile(path); string(b) != "one" || fileMode(t, path) != 0o600 {
		t.Errorf("refused write changed the file: %q %#o", b, fileMode(t, path))
	}
	// Neither the success nor the refusal leaves a temp file; a dangling
	// symlink at the path is refused too, not followed.
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := writeFileExclusive(filepath.Join(dir, "link"), []byte("x"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("writeFileExclusive through a dangling symlink: %v, want fs.ErrExist", err)
	}
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"link", "secret"}) {
		t.Errorf("directory holds %q, want only link and secret", names)
	}
}
