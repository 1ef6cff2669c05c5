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

// TestApplianceEnrolledBadConfig: once the box is enrolled, config.toml is
// not needed to come up. Garbage in it (a bad hand edit, or what an older
// version's token removal left) is printed as a config error, and the box
// comes up from perm with DHCP and the identity it had, instead of looping
// in "config error" for ever.
func TestApplianceEnrolledBadConfig(t *testing.T) {
	requireImageTools(t)
	im := testImage(t)
	img := copyImage(t, im)
	configured(t, img)
	v := bootDirect(t, im, img)
	v.expect(`^meshnode: init: join token removed`, bootDeadline)
	id := v.expect(`^meshnode: ready name=edge-test overlay=(stub-[0-9a-f]+)`, time.Minute)[1]
	v.expect(`^meshnode: init: slot a marked good`, time.Minute)
	v.kill()

	writeESP(t, img, config.Path, []byte("name = \"edge-test\"\njoin = [garbage\n"))
	v = bootDirect(t, im, img)
	v.expect(`^meshnode: config error: /boot/meshnode/config.toml: .*\(this box is enrolled: coming up from /perm/meshnode anyway\)`, bootDeadline)
	v.expect(`^meshnode: init: enrolled box: /boot/meshnode/config.toml ignored, kernel arguments used`, time.Minute)
	v.expect(`^meshnode: init: network eth0 10\.0\.2\.15/24 .*\(dhcp\)`, time.Minute)
	v.expect(`^meshnode: init: ready name= slot=a first_boot=false`, time.Minute)
	if got := v.expect(`^meshnode: ready name=edge-test overlay=(stub-[0-9a-f]+)`, time.Minute)[1]; got != id {
		t.Errorf("identity %s after the bad config, %s before: not the one on perm", got, id)
	}
	v.absent(`^meshnode: fatal|retrying in|EXT4-fs error`)
}
