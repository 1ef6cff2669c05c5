package identity

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// asAnotherUser makes every file look owned by someone else for the rest
// of the test (making such files for real needs root).
func asAnotherUser(t *testing.T) {
	t.Helper()
	old := euid
	euid = func() int { return old() + 1 }
	t.Cleanup(func() { euid = old })
}

// Issue 14 finding 6: joining reused an identity.seed found in the state
// directory without asking who wrote it; a seed someone else owns may be
// one they know.
func TestLoadSeedRefusesAnotherOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.seed")
	if _, err := CreateSeed(path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSeed(path); err != nil {
		t.Fatalf("own seed: %v", err)
	}
	asAnotherUser(t)
	_, err := LoadSeed(path)
	if err == nil || !strings.Contains(err.Error(), "owned by uid") || !strings.Contains(err.Error(), path) {
		t.Fatalf("seed owned by another user: %v, want an error naming the file and its owner", err)
	}
}

// Issue 14 finding 6: Ensure left an existing state directory as loose as
// it found it.
func TestEnsureTightensStateDir(t *testing.T) {
	dir := StateDir(filepath.Join(t.TempDir(), "state"))
	if err := os.Mkdir(string(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(string(dir), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := dir.Ensure(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(string(dir))
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o700 {
		t.Fatalf("state directory mode %#o after Ensure, want 0700", m)
	}
	fresh := StateDir(filepath.Join(t.TempDir(), "a", "b"))
	if err := fresh.Ensure(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(string(fresh)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("new state directory: %v %v", fi.Mode(), err)
	}
	asAnotherUser(t)
	if err := dir.Ensure(); err == nil || !strings.Contains(err.Error(), "owned by uid") {
		t.Fatalf("state directory owned by another user: %v", err)
	}
	file := StateDir(filepath.Join(t.TempDir(), "file"))
	os.WriteFile(string(file), nil, 0o600)
	if err := file.Ensure(); err == nil {
		t.Fatal("a file as state directory: no error")
	}
}

// Issue 14 finding 6: invites.json.lock was opened following symlinks, so
// a link planted there made the CA holder create (or lock) any file it can
// write.
func TestInvitesLockDoesNotFollowSymlinks(t *testing.T) {
	ca := newCA(t, "acme")
	s, path := newInvites(t, ca)
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Symlink(target, path+".lock"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.New(time.Hour, 0, t0); err == nil || !strings.Contains(err.Error(), path+".lock") {
		t.Fatalf("lock file is a symlink: %v, want an error naming it", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the symlink's target was created: %v", err)
	}
	// A plain lock file works as before.
	os.Remove(path + ".lock")
	if _, err := s.New(time.Hour, 0, t0); err != nil {
		t.Fatal(err)
	}
}
