package identity

import (
	"fmt"
	"os"
	"syscall"
)

// lockFile opens (creating, 0600) the lock file at path and takes an
// exclusive flock on it; closing the file releases the lock. The open does
// not follow a symlink: the state directory is ours, but a lock file name
// planted as a link elsewhere must not make us create or truncate the
// file it points to, nor lock something another program relies on.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("lock %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
