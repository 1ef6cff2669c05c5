// Package disk owns the appliance's on-disk layout: a GPT disk with a FAT32
// ESP named "meshnode-boot" (systemd-boot, BLS entries for slots a and b,
// the kernels and initramfs images, the first-boot config) and an ext4
// partition named "meshnode-perm" for the node's state. It writes images and
// edits an existing image's or device's ESP without mounting anything.
package disk

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"sort"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	dpkg "github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"
)

// GPT partition names PID 1 looks for.
const (
	BootLabel = "meshnode-boot"
	PermLabel = "meshnode-perm"
)

const (
	sector   = 512
	firstLBA = 2048 // 1 MiB alignment
	// MiB is a mebibyte.
	MiB = 1 << 20
)

// Layout sizes the image.
type Layout struct {
	Size    int64 // whole image, bytes
	ESPSize int64 // ESP, bytes
}

// DefaultLayout fits two slots of a ~10 MiB kernel and a ~30 MiB initramfs
// with room to spare, and a small perm partition (a real box's disk is bigger;
// the image stays small to flash quickly).
var DefaultLayout = Layout{Size: 1024 * MiB, ESPSize: 256 * MiB}

// File is one file for the ESP.
type File struct {
	Path string // slash-separated, relative to the ESP root
	Data []byte
}

// Create writes a new disk image at imgPath. seed makes the GPT and
// filesystem identifiers deterministic (the same seed gives the same
// GUIDs), so two builds of the same inputs differ only where FAT timestamps do.
func Create(imgPath string, l Layout, seed string, espFiles []File) (err error) {
	if l.ESPSize < 64*MiB || l.Size < l.ESPSize+64*MiB {
		return fmt.Errorf("disk layout %+v: ESP needs at least 64 MiB and perm at least 64 MiB", l)
	}
	if err := os.Remove(imgPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	d, err := diskfs.Create(imgPath, l.Size, diskfs.SectorSizeDefault)
	if err != nil {
		return fmt.Errorf("%s: %w", imgPath, err)
	}
	defer func() {
		if cerr := d.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("%s: %w", imgPath, cerr)
		}
	}()
	espEnd := uint64(firstLBA + l.ESPSize/sector - 1)
	// The backup GPT takes the last 33 sectors; stop perm 1 MiB short, aligned.
	permEnd := uint64(l.Size/sector - firstLBA - 1)
	table := &gpt.Table{
		LogicalSectorSize:  sector,
		PhysicalSectorSize: sector,
		ProtectiveMBR:      true,
		GUID:               guid(seed, "disk"),
		Partitions: []*gpt.Partition{
			{Index: 1, Start: firstLBA, End: espEnd, Type: gpt.EFISystemPartition, Name: BootLabel, GUID: guid(seed, "boot")},
			{Index: 2, Start: espEnd + 1, End: permEnd, Type: gpt.LinuxFilesystem, Name: PermLabel, GUID: guid(seed, "perm")},
		},
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("%s: partition: %w", imgPath, err)
	}
	fs, err := d.CreateFilesystem(dpkg.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: "MESHNODE", Reproducible: true})
	if err != nil {
		return fmt.Errorf("%s: ESP: %w", imgPath, err)
	}
	if err := writeFiles(fs, espFiles); err != nil {
		return fmt.Errorf("%s: ESP: %w", imgPath, err)
	}
	if err := FormatPerm(d, 2, seed); err != nil {
		return fmt.Errorf("%s: %w", imgPath, err)
	}
	return nil
}

// FormatPerm makes an empty ext4 filesystem labelled meshnode-perm on
// partition index of d. PID 1 calls it only for a partition with no
// filesystem at all.
func FormatPerm(d *dpkg.Disk, index int, seed string) error {
	p, err := d.GetPartition(index)
	if err != nil {
		return fmt.Errorf("perm partition %d: %w", index, err)
	}
	u, err := uuid.Parse(guid(seed, "perm-fs"))
	if err != nil {
		return err
	}
	if _, err := ext4.Create(d.Backend, p.GetSize(), p.GetStart(), d.LogicalBlocksize, &ext4.Params{UUID: &u, VolumeName: PermLabel}); err != nil {
		return fmt.Errorf("perm partition %d: mkfs ext4: %w", index, err)
	}
	return nil
}

func guid(seed, what string) string {
	h := sha256.Sum256([]byte("meshnode image guid v1\x00" + seed + "\x00" + what))
	u, _ := uuid.FromBytes(h[:16])
	// RFC 4122 version 4 / variant bits so tools accept it as a random UUID.
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return strings.ToUpper(u.String())
}

func writeFiles(fs filesystem.FileSystem, files []File) error {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	made := map[string]bool{}
	for _, f := range files {
		dir := path.Dir("/" + f.Path)
		if dir != "/" && !made[dir] {
			if err := fs.Mkdir(dir); err != nil {
				return fmt.Errorf("mkdir %s: %w", dir, err)
			}
			made[dir] = true
		}
		if err := writeFile(fs, "/"+f.Path, f.Data); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(fs filesystem.FileSystem, p string, data []byte) error {
	w, err := fs.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("close %s: %w", p, err)
	}
	return nil
}

// ESP is the meshnode-boot partition of an opened image or device.
type ESP struct {
	name string
	d    *dpkg.Disk
	fs   filesystem.FileSystem
}

// ErrNotMeshnode is wrapped when a disk has no meshnode-boot partition.
var ErrNotMeshnode = errors.New("not a meshnode image: no GPT partition named " + BootLabel)

// OpenESP opens the ESP of an image file or block device. A device that is
// mounted (itself or any of its partitions) is refused.
func OpenESP(name string, writable bool) (*ESP, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if st.Mode()&os.ModeDevice != 0 {
		if err := CheckNotMounted(name); err != nil {
			return nil, err
		}
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: neither an image file nor a block device", name)
	}
	mode := diskfs.ReadOnly
	if writable {
		mode = diskfs.ReadWriteExclusive
	}
	d, err := diskfs.Open(name, diskfs.WithOpenMode(mode))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	idx, err := findPartition(d, BootLabel)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	fs, err := d.GetFilesystem(idx)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("%s: partition %s: %w", name, BootLabel, err)
	}
	if fs.Type() != filesystem.TypeFat32 {
		d.Close()
		return nil, fmt.Errorf("%s: partition %s is not FAT32", name, BootLabel)
	}
	return &ESP{name: name, d: d, fs: fs}, nil
}

func findPartition(d *dpkg.Disk, label string) (int, error) {
	t, err := d.GetPartitionTable()
	if err != nil {
		return 0, fmt.Errorf("%w (%v)", ErrNotMeshnode, err)
	}
	gt, ok := t.(*gpt.Table)
	if !ok {
		return 0, fmt.Errorf("%w (partition table is not GPT)", ErrNotMeshnode)
	}
	for i, p := range gt.Partitions {
		if p.Name == label && p.Type != gpt.Unused {
			return i + 1, nil
		}
	}
	return 0, ErrNotMeshnode
}

// ReadFile reads a file from the ESP (p relative to its root).
func (e *ESP) ReadFile(p string) ([]byte, error) {
	f, err := e.fs.OpenFile("/"+strings.TrimPrefix(p, "/"), os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", e.name, p, err)
	}
	defer f.Close()
	return io.ReadAll(f)
}

// WriteFile replaces (or creates) a file on the ESP; its directory must exist.
func (e *ESP) WriteFile(p string, data []byte) error {
	if err := writeFile(e.fs, "/"+strings.TrimPrefix(p, "/"), data); err != nil {
		return fmt.Errorf("%s: %w", e.name, err)
	}
	return nil
}

// List returns the names in an ESP directory.
func (e *ESP) List(dir string) ([]string, error) {
	ents, err := e.fs.ReadDir(strings.Trim(dir, "/"))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", e.name, dir, err)
	}
	var names []string
	for _, en := range ents {
		names = append(names, en.Name())
	}
	return names, nil
}

// Close flushes writes to stable storage and releases the image or device.
func (e *ESP) Close() error {
	var serr error
	if f, err := e.d.Backend.Sys(); err == nil && f != nil {
		serr = f.Sync()
	}
	if err := e.d.Close(); err != nil {
		return err
	}
	return serr
}

var _ iofs.FS = filesystem.FileSystem(nil)

// FormatPermDevice creates the perm ext4 filesystem on a partition device
// (e.g. /dev/vda2) at first boot. The caller has checked that it is blank.
func FormatPermDevice(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	u := uuid.New()
	if _, err := ext4.Create(file.New(f, false), size, 0, sector, &ext4.Params{UUID: &u, VolumeName: PermLabel}); err != nil {
		return fmt.Errorf("%s: mkfs ext4: %w", dev, err)
	}
	return f.Sync()
}
