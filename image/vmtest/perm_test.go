package vmtest

import (
	"bytes"
	"os"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/meshnode/meshnode/image/config"
)

// permRange returns the byte offset and size of partition 2 (meshnode-perm).
func permRange(t *testing.T, img string) (int64, int64) {
	t.Helper()
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.GetPartitionTable(); err != nil {
		t.Fatal(err)
	}
	p, err := d.GetPartition(2)
	if err != nil {
		t.Fatal(err)
	}
	return p.GetStart(), p.GetSize()
}

// fillPerm overwrites the start of perm (its superblock area) with b, or
// zeroes the whole partition when b is nil.
func fillPerm(t *testing.T, img string, b []byte) {
	t.Helper()
	off, size := permRange(t, img)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b == nil {
		zero := make([]byte, 1<<20)
		for o := int64(0); o < size; o += int64(len(zero)) {
			if _, err := f.WriteAt(zero[:min(int64(len(zero)), size-o)], off+o); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func configured(t *testing.T, img string) {
	t.Helper()
	cfg, err := config.Encode(config.Config{Name: "edge-test", Join: "10.0.2.2:51821", Token: "tok-perm"})
	if err != nil {
		t.Fatal(err)
	}
	writeESP(t, img, config.Path, cfg)
}

// TestAppliancePermBlank: a perm partition with no filesystem at all (a
// disk whose partition was wiped) is formatted on first boot, then used.
func TestAppliancePermBlank(t *testing.T) {
	requireImageTools(t)
	im := testImage(t)
	img := copyImage(t, im)
	configured(t, img)
	fillPerm(t, img, nil)
	v := bootDirect(t, im, img)
	v.expect(`^meshnode: init: /dev/vda2 is blank: creating the ext4 filesystem`, bootDeadline)
	v.expect(`^meshnode: init: perm mounted at /perm \(formatted=true, state entries=0\)`, time.Minute)
	v.expect(`^meshnode: ready name=edge-test overlay=stub-`, 2*time.Minute)
	v.absent(`^meshnode: fatal|EXT4-fs error`)
}

// TestAppliancePermNotBlank: a perm partition holding something PID 1
// cannot mount is never formatted: the error is printed, the box reboots
// (qemu runs with -no-reboot, so it exits), and the bytes are untouched.
func TestAppliancePermNotBlank(t *testing.T) {
	requireImageTools(t)
	im := testImage(t)
	img := copyImage(t, im)
	configured(t, img)
	junk := bytes.Repeat([]byte("precious data "), 4096)
	fillPerm(t, img, junk)
	v := bootDirect(t, im, img)
	v.expect(`^meshnode: fatal: mount /dev/vda2 on /perm \(ext4\): .*/dev/vda2 is not blank, so it is left as it is \(rebooting in`, bootDeadline)
	select {
	case <-v.exited:
	case <-time.After(2 * time.Minute):
		t.Fatalf("no reboot after the fatal error\n%s", v.tail(20))
	}
	off, _ := permRange(t, img)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(junk))
	if _, err := f.ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, junk) {
		t.Fatal("perm partition was modified")
	}
	v.absent(`creating the ext4 filesystem|^meshnode: ready`)
}
