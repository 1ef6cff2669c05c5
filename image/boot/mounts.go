package boot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/meshnode/meshnode/image/disk"
	"golang.org/x/sys/unix"
)

// mountEarly mounts what everything else needs: /proc, /sys, /dev, /run, /tmp.
func mountEarly() error {
	for _, m := range []struct{ src, dst, typ, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
	} {
		if err := mount(m.src, m.dst, m.typ, unix.MS_NOSUID, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return err
		}
	}
	mountOptional("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC)
	return nil
}

func mount(src, dst, typ string, flags uintptr, data string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", dst, err)
	}
	if err := unix.Mount(src, dst, typ, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s (%s): %w", src, dst, typ, err)
	}
	return nil
}

// mountOptional mounts something nice to have (efivarfs is absent on BIOS boots).
func mountOptional(src, dst, typ string, flags uintptr) {
	if err := mount(src, dst, typ, flags, ""); err != nil {
		say("meshnode: init: %v (continuing)", err)
	}
}

// mountPerm mounts the persistent partition. It formats it only when the
// partition is blank (all zeros where any filesystem keeps its superblock):
// a partition holding anything, even a filesystem this kernel cannot mount,
// is never touched and the error is fatal instead.
func mountPerm(dev, dst string) (formatted bool, err error) {
	// noinit_itable: the filesystem is made with zeroed inode tables but
	// without the flags that tell the kernel so; its lazy initialiser would
	// otherwise flag group 0 as inconsistent.
	err = mount(dev, dst, "ext4", unix.MS_NOATIME, permOpts)
	if err == nil {
		return false, nil
	}
	blank, berr := isBlank(dev)
	if berr != nil {
		return false, fmt.Errorf("%v; and reading %s: %w", err, dev, berr)
	}
	if !blank {
		return false, fmt.Errorf("%v; %s is not blank, so it is left as it is", err, dev)
	}
	say("meshnode: init: %s is blank: creating the ext4 filesystem", dev)
	if ferr := disk.FormatPermDevice(dev); ferr != nil {
		return false, ferr
	}
	if err := mount(dev, dst, "ext4", unix.MS_NOATIME, permOpts); err != nil {
		return true, err
	}
	return true, nil
}

const permOpts = "noinit_itable"

// blankProbe covers the superblocks of ext*, FAT, btrfs (64 KiB), XFS and
// the GPT/MBR signatures a stray whole-disk copy would leave.
const blankProbe = 128 << 10

func isBlank(dev string) (bool, error) {
	f, err := os.Open(dev)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, blankProbe)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false, err
	}
	return len(bytes.Trim(buf[:n], "\x00")) == 0, nil
}
