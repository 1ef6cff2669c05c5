package update

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Slots of the appliance and where their parts live on the ESP.
const (
	SlotA      = "a"
	SlotB      = "b"
	EntriesDir = "loader/entries"
	// Tries is how many boots systemd-boot gives a freshly written slot
	// before it falls back (the entry is named meshnode-b+3.conf).
	Tries = 3
)

// Other is the slot that is not s.
func Other(s string) string {
	if s == SlotA {
		return SlotB
	}
	return SlotA
}

// ValidSlot reports whether s names a slot.
func ValidSlot(s string) bool { return s == SlotA || s == SlotB }

// SlotFile is the ESP path of a slot's kernel or initramfs.
func SlotFile(slot, name string) string { return "meshnode/" + slot + "/" + name }

// EntryText is a slot's loader entry. systemd-boot sorts entries that share
// a sort-key by version, highest first, and puts entries with no tries left
// last; loader.conf's "default meshnode-*" then picks the best slot that is
// not known bad. The installer gives a fresh slot a version above every
// other entry's, which is what makes it the default.
func EntryText(slot string, version int, release, cmdline string) []byte {
	return fmt.Appendf(nil, "title meshnode %s (slot %s)\nsort-key meshnode\nversion %d\nlinux /%s\ninitrd /%s\noptions %s meshnode.slot=%s\n",
		release, slot, version, SlotFile(slot, FileKernel), SlotFile(slot, FileInitramfs), strings.TrimSpace(cmdline), slot)
}

// FS is the ESP as the installer changes it. Every change is durable when
// the call returns. DirFS is the real one; tests wrap it to cut the power
// between any two changes.
type FS interface {
	ReadFile(name string) ([]byte, error)
	ReadDir(dir string) ([]string, error)
	// WriteFile replaces name atomically: temporary file, fsync, rename.
	WriteFile(name string, data []byte) error
	Rename(from, to string) error
	Remove(name string) error
}

// DirFS is an ESP mounted at a directory (PID 1 mounts it at /boot).
type DirFS string

func (d DirFS) path(name string) string { return filepath.Join(string(d), filepath.FromSlash(name)) }

// ReadFile reads a file.
func (d DirFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(d.path(name)) }

// ReadDir lists the names in a directory.
func (d DirFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(d.path(dir))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// WriteFile writes name.tmp, fsyncs it, renames it over name and flushes
// the filesystem: on vfat an fsync of the file and its directory can leave
// the FAT itself dirty, and a power cut then loses the new file.
func (d DirFS) WriteFile(name string, data []byte) error {
	p := d.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", p, werr)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return d.sync(filepath.Dir(p))
}

// Rename renames a file and flushes the filesystem.
func (d DirFS) Rename(from, to string) error {
	if err := os.Rename(d.path(from), d.path(to)); err != nil {
		return err
	}
	return d.sync(filepath.Dir(d.path(to)))
}

// Remove removes a file (a missing one is not an error) and flushes.
func (d DirFS) Remove(name string) error {
	if err := os.Remove(d.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return d.sync(filepath.Dir(d.path(name)))
}

func (d DirFS) sync(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// Entry is one slot's loader entry as systemd-boot's boot counting names it:
// meshnode-b.conf (blessed), meshnode-b+3.conf (three tries left),
// meshnode-b+2-1.conf (two left, one used), meshnode-b+0-3.conf (bad).
type Entry struct {
	File    string // name in loader/entries
	Slot    string
	Left    int // tries left; -1 when the entry is not counted (blessed)
	Done    int
	Version int // the entry's "version" line
}

// Counting reports whether the entry is still under boot counting.
func (e Entry) Counting() bool { return e.Left >= 0 }

// Bad reports whether systemd-boot considers the entry bad (no tries left).
func (e Entry) Bad() bool { return e.Left == 0 }

func (e Entry) String() string { return e.File }

// parseEntryName reads a meshnode-<slot>[+LEFT[-DONE]].conf name.
func parseEntryName(name string) (Entry, bool) {
	base, ok := strings.CutSuffix(name, ".conf")
	if !ok {
		return Entry{}, false
	}
	base, ok = strings.CutPrefix(base, "meshnode-")
	if !ok {
		return Entry{}, false
	}
	e := Entry{File: name, Left: -1}
	slot, counter, counted := strings.Cut(base, "+")
	if !ValidSlot(slot) {
		return Entry{}, false
	}
	e.Slot = slot
	if counted {
		left, done, hasDone := strings.Cut(counter, "-")
		l, err := strconv.Atoi(left)
		if err != nil || l < 0 {
			return Entry{}, false
		}
		e.Left = l
		if hasDone {
			d, err := strconv.Atoi(done)
			if err != nil || d < 0 {
				return Entry{}, false
			}
			e.Done = d
		}
	}
	return e, true
}

// Entries reads the slots' loader entries, sorted as systemd-boot sorts
// them (the first is what "default meshnode-*" boots).
func Entries(esp FS) ([]Entry, error) {
	names, err := esp.ReadDir(EntriesDir)
	if err != nil {
		return nil, fmt.Errorf("ESP %s: %w", EntriesDir, err)
	}
	var out []Entry
	for _, n := range names {
		e, ok := parseEntryName(n)
		if !ok {
			continue
		}
		data, err := esp.ReadFile(path.Join(EntriesDir, n))
		if err != nil {
			return nil, fmt.Errorf("ESP %s/%s: %w", EntriesDir, n, err)
		}
		e.Version = entryVersion(data)
		out = append(out, e)
	}
	SortEntries(out)
	return out, nil
}

// SortEntries orders entries as systemd-boot does for entries that share a
// sort-key: those with no tries left last, then by version, highest first,
// then by file name, highest first.
func SortEntries(es []Entry) {
	slices.SortStableFunc(es, func(a, b Entry) int {
		if c := cmp.Compare(btoi(a.Bad()), btoi(b.Bad())); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Version, a.Version); c != 0 {
			return c
		}
		return cmp.Compare(b.File, a.File)
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func entryVersion(data []byte) int {
	for _, l := range bytes.Split(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(bytes.TrimSpace(l), []byte("version ")); ok {
			n, _ := strconv.Atoi(string(bytes.TrimSpace(v)))
			return n
		}
	}
	return 0
}

// slotEntries returns the entries of one slot.
func slotEntries(es []Entry, slot string) []Entry {
	var out []Entry
	for _, e := range es {
		if e.Slot == slot {
			out = append(out, e)
		}
	}
	return out
}

// writeSlotFiles writes the kernel and initramfs of slot (each temp +
// fsync + rename) and reads them back against the manifest. The caller has
// removed the slot's loader entry first: a slot without an entry is never
// booted, so a power cut here leaves its files half written and harmless.
func writeSlotFiles(esp FS, slot string, b *Bundle, say func(string)) error {
	for _, name := range []string{FileKernel, FileInitramfs} {
		p := SlotFile(slot, name)
		say(fmt.Sprintf("slot %s: writing %s (%d bytes)", slot, name, len(b.Files[name])))
		if err := esp.WriteFile(p, b.Files[name]); err != nil {
			return fmt.Errorf("ESP %s: %w", p, err)
		}
		back, err := esp.ReadFile(p)
		if err != nil {
			return fmt.Errorf("ESP %s: reading it back: %w", p, err)
		}
		if f, _ := b.Manifest.File(name); sha256.Sum256(back) != f.SHA256 {
			return fmt.Errorf("ESP %s: what was read back differs from what was written: %w", p, ErrHash)
		}
	}
	return nil
}

// writeEntry writes slot's loader entry with tries boot tries and a
// version above every other entry's, which makes it the default: the last
// step of an install.
func writeEntry(esp FS, slot string, b *Bundle, tries int) (Entry, error) {
	es, err := Entries(esp)
	if err != nil {
		return Entry{}, err
	}
	version := 0
	for _, e := range es {
		if e.Slot != slot {
			version = max(version, e.Version)
		}
	}
	e := Entry{File: fmt.Sprintf("meshnode-%s+%d.conf", slot, tries), Slot: slot, Left: tries, Version: version + 1}
	text := EntryText(slot, e.Version, b.Manifest.Release, string(b.Files[FileCmdline]))
	if err := esp.WriteFile(path.Join(EntriesDir, e.File), text); err != nil {
		return Entry{}, fmt.Errorf("ESP %s/%s: %w", EntriesDir, e.File, err)
	}
	return e, nil
}

// blessEntry renames the slot's counting entry to its plain name, telling
// systemd-boot the slot is good. A slot already blessed is left alone.
func blessEntry(esp FS, slot string) (bool, error) {
	es, err := Entries(esp)
	if err != nil {
		return false, err
	}
	for _, e := range slotEntries(es, slot) {
		if e.Counting() {
			to := "meshnode-" + slot + ".conf"
			if err := esp.Rename(path.Join(EntriesDir, e.File), path.Join(EntriesDir, to)); err != nil {
				return false, fmt.Errorf("ESP: blessing %s: %w", e.File, err)
			}
			return true, nil
		}
	}
	return false, nil
}

// markBad renames the slot's counting entry so that it has no tries left:
// systemd-boot sorts it last and boots the other slot.
func markBad(esp FS, slot string) error {
	es, err := Entries(esp)
	if err != nil {
		return err
	}
	for _, e := range slotEntries(es, slot) {
		if e.Counting() && !e.Bad() {
			to := fmt.Sprintf("meshnode-%s+0-%d.conf", slot, e.Done+e.Left)
			if err := esp.Rename(path.Join(EntriesDir, e.File), path.Join(EntriesDir, to)); err != nil {
				return fmt.Errorf("ESP: marking %s bad: %w", e.File, err)
			}
			return nil
		}
	}
	return fmt.Errorf("ESP: slot %s has no counting entry to mark bad", slot)
}
