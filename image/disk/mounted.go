package disk

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// CheckNotMounted refuses a block device that is mounted, or any of whose
// partitions is mounted or used as swap: writing behind the kernel's back
// would corrupt both.
func CheckNotMounted(dev string) error {
	return checkNotMounted(dev, "/proc/self/mountinfo", "/sys")
}

func checkNotMounted(dev, mountinfo, sysfs string) error {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return fmt.Errorf("%s: not a block device", dev)
	}
	self := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	devs := map[string]bool{self: true}
	// /sys/dev/block/M:m is the disk; its partitions are subdirectories with a dev file.
	sysDir, err := filepath.EvalSymlinks(filepath.Join(sysfs, "dev/block", self))
	if err == nil {
		parts, _ := filepath.Glob(filepath.Join(sysDir, "*", "dev"))
		for _, p := range parts {
			if b, err := os.ReadFile(p); err == nil {
				devs[strings.TrimSpace(string(b))] = true
			}
		}
	}
	f, err := os.Open(mountinfo)
	if err != nil {
		return fmt.Errorf("cannot tell whether %s is mounted: %w", dev, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && devs[fields[2]] {
			return fmt.Errorf("%s: device %s is mounted on %s: unmount it first", dev, fields[2], fields[4])
		}
	}
	if b, err := os.ReadFile("/proc/swaps"); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) == 0 {
				continue
			}
			var s unix.Stat_t
			if unix.Stat(fs[0], &s) == nil && devs[fmt.Sprintf("%d:%d", unix.Major(uint64(s.Rdev)), unix.Minor(uint64(s.Rdev)))] {
				return fmt.Errorf("%s: %s is in use as swap", dev, fs[0])
			}
		}
	}
	return sc.Err()
}
