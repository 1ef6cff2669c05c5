package update

import (
	"errors"
	"fmt"
	"path"
	"sync"
	"time"
)

// BootKind is what this boot is as far as updates go.
type BootKind int

const (
	// BootNormal: no update is pending for this slot; it is marked good
	// once the node is ready, as always.
	BootNormal BootKind = iota
	// BootTrial: this slot holds a pending update and is on probation: it
	// is blessed only when the node is healthy, else marked bad.
	BootTrial
	// BootRolledBack: a pending update's slot failed and the box is back
	// on the slot it updated from.
	BootRolledBack
	// BootInterrupted: the box restarted while it wrote the other slot,
	// which was left without a loader entry.
	BootInterrupted
)

var bootKindNames = [...]string{"normal", "trial", "rolled back", "interrupted"}

func (k BootKind) String() string {
	if int(k) < len(bootKindNames) {
		return bootKindNames[k]
	}
	return fmt.Sprintf("BootKind(%d)", int(k))
}

// Running is what the booted slot runs: PID 1 reads it from the
// initramfs's build record.
type Running struct {
	Generation uint64 `json:"generation"`
	Release    string `json:"release"`
}

// ErrTrial refuses an install while the booted slot is on trial: the only
// other slot is the one to fall back to.
var ErrTrial = errors.New("this boot is on trial")

// Box is one appliance's update state: its ESP, its record on perm, and
// the slot it booted. It is what PID 1 opens at boot and what the update
// agent installs through.
type Box struct {
	esp       FS
	statePath string
	slot      string
	running   Running
	arch      string
	tries     int
	say       func(string)
	opened    time.Time

	mu    sync.Mutex
	state State
	kind  BootKind
	last  string // what Open found, for the console
}

// BoxConfig is what Open needs.
type BoxConfig struct {
	ESP       FS     // the mounted ESP
	StatePath string // the state file on perm
	Slot      string // the booted slot (meshnode.slot=)
	Running   Running
	Arch      string // this box's GOARCH
	Tries     int    // boot tries of a fresh slot (default Tries)
	// Say, when set, is told each step of an install as it starts (the
	// console: an install takes seconds on a slow ESP).
	Say func(line string)
}

// Open reads the state, decides what this boot is (normal, the trial of a
// pending update, or the return from a failed one) and records it.
func Open(c BoxConfig, now time.Time) (*Box, error) {
	if !ValidSlot(c.Slot) {
		return nil, fmt.Errorf("update: booted slot %q is neither %s nor %s (meshnode.slot= on the kernel command line)", c.Slot, SlotA, SlotB)
	}
	if c.Tries <= 0 {
		c.Tries = Tries
	}
	if c.Say == nil {
		c.Say = func(string) {}
	}
	b := &Box{esp: c.ESP, statePath: c.StatePath, slot: c.Slot, running: c.Running, arch: c.Arch, tries: c.Tries, say: c.Say, opened: now}
	st, err := LoadState(c.StatePath)
	if err != nil {
		return nil, err
	}
	es, err := Entries(c.ESP)
	if err != nil {
		return nil, err
	}
	b.state = st
	changed := b.decide(es, now)
	if b.kind != BootTrial && c.Running.Generation > b.state.Installed {
		// A box flashed with a newer image, or the first boot: what runs
		// (and is not on trial) is the floor.
		b.state.Installed, b.state.InstalledRelease = c.Running.Generation, c.Running.Release
		changed = true
	}
	if changed {
		if err := b.state.Save(c.StatePath); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (b *Box) decide(es []Entry, now time.Time) bool {
	p := b.state.Pending
	if p == nil {
		b.kind = BootNormal
		return false
	}
	if p.Slot == b.slot {
		if p.Phase == PhaseWriting {
			// Only a hand-picked menu entry boots a slot without an
			// entry; what it runs is not the update.
			b.finish(ResultInterrupted, fmt.Sprintf("slot %s booted while it was being written", p.Slot), now)
			b.kind = BootInterrupted
			return true
		}
		p.Phase = PhaseTrial
		p.TrialBoots++
		b.kind = BootTrial
		b.last = fmt.Sprintf("slot %s on trial for generation %d (%s), boot %d", p.Slot, p.Generation, p.Release, p.TrialBoots)
		return true
	}
	// Booted the slot the update came from.
	var entry *Entry
	for _, e := range slotEntries(es, p.Slot) {
		entry = &e
		break
	}
	switch {
	case p.Phase == PhaseWriting || entry == nil:
		b.finish(ResultInterrupted, fmt.Sprintf("the box restarted while slot %s was being written; slot %s has no loader entry and is not booted", p.Slot, p.Slot), now)
		b.kind = BootInterrupted
		return true
	case p.Failure != "":
		b.finish(ResultRolledBack, p.Failure, now)
	case p.Phase == PhaseWritten:
		b.finish(ResultRolledBack, fmt.Sprintf("slot %s never started the node (kernel or initramfs failed; loader entry %s)", p.Slot, entry.File), now)
	default:
		b.finish(ResultRolledBack, fmt.Sprintf("slot %s booted %d times without becoming healthy (loader entry %s)", p.Slot, p.TrialBoots, entry.File), now)
	}
	b.state.addRolledBack(p.Generation)
	b.kind = BootRolledBack
	return true
}

// finish ends the pending update with result.
func (b *Box) finish(result, reason string, now time.Time) {
	p := b.state.Pending
	b.state.Last = &Outcome{Generation: p.Generation, Release: p.Release, Result: result, Reason: reason, At: now.UTC()}
	b.state.Pending = nil
	b.last = b.state.Last.String()
}

// Kind is what this boot is.
func (b *Box) Kind() BootKind {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kind
}

// Opened is when Open ran (early in the boot): a trial's deadline counts
// from it, whatever happens to the node after.
func (b *Box) Opened() time.Time { return b.opened }

// Slot is the booted slot.
func (b *Box) Slot() string { return b.slot }

// Running is what the booted slot runs.
func (b *Box) Running() Running { return b.running }

// Summary is one line for the console about what Open found; empty for an
// ordinary boot.
func (b *Box) Summary() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// State returns a copy of the state.
func (b *Box) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state.clone()
}

// Floor is the generation a manifest must be above.
func (b *Box) Floor() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.floorLocked()
}

func (b *Box) floorLocked() uint64 {
	f := max(b.state.Installed, b.running.Generation)
	if p := b.state.Pending; p != nil && p.Slot != b.slot {
		f = max(f, p.Generation) // one already written waits for its reboot
	}
	return f
}

// Check is what a box checks before downloading: the manifest's signature
// by ca, architecture, generation (rollback protection) and expiry.
func (b *Box) Check(m *Manifest, ca [32]byte, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.checkLocked(m, ca, now)
}

func (b *Box) checkLocked(m *Manifest, ca [32]byte, now time.Time) error {
	if b.kind == BootTrial {
		return fmt.Errorf("%s: %w: slot %s must be blessed or rolled back first", m, ErrTrial, b.slot)
	}
	return Check(m, Policy{CA: ca, Arch: b.arch, Installed: b.floorLocked(), RolledBack: b.state.RolledBack, Now: now})
}

// Install checks the bundle whole (signature, architecture, generation,
// expiry, every file's size and hash, the command line) and only then
// writes it to the inactive slot with a fresh boot-counting entry that
// makes it the default. The state on perm says what is being written
// before the first byte is, so that a restart at any point is understood
// at the next boot. It returns the slot's new loader entry.
func (b *Box) Install(bu *Bundle, ca [32]byte, now time.Time) (Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := bu.Manifest
	if err := b.checkLocked(m, ca, now); err != nil {
		return Entry{}, err
	}
	if err := CheckFiles(m, bu.Files); err != nil {
		return Entry{}, err
	}
	target := Other(b.slot)
	st := b.state.clone()
	st.Pending = &Pending{Generation: m.Generation, Release: m.Release, Slot: target, Phase: PhaseWriting, Since: now.UTC()}
	if err := st.Save(b.statePath); err != nil {
		return Entry{}, err
	}
	b.state = st
	if err := writeFiles(b.esp, target, bu, b.say); err != nil {
		return Entry{}, err
	}
	b.state.Pending.Phase = PhaseWritten
	if err := b.state.Save(b.statePath); err != nil {
		return Entry{}, err
	}
	b.say(fmt.Sprintf("slot %s: writing its loader entry", target))
	return writeEntry(b.esp, target, bu, b.tries)
}

// Bless marks the booted slot good. On a trial boot it also commits the
// update: its generation becomes the floor. It reports whether an entry
// was renamed.
func (b *Box) Bless(now time.Time) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// The entry first: if the power is cut before the state is saved, the
	// next boot is a trial again and blesses again.
	renamed, err := blessEntry(b.esp, b.slot)
	if err != nil {
		return false, err
	}
	if b.kind == BootTrial {
		p := b.state.Pending
		st := b.state.clone()
		st.Installed, st.InstalledRelease = p.Generation, p.Release
		st.Last = &Outcome{Generation: p.Generation, Release: p.Release, Result: ResultBlessed, At: now.UTC()}
		st.Pending = nil
		if err := st.Save(b.statePath); err != nil {
			return renamed, err
		}
		b.state, b.kind = st, BootNormal
	}
	return renamed, nil
}

// Fail ends a trial: it records why (the old slot reports it after the
// rollback) and marks the booted slot's entry bad, so that the next boot
// is the other slot. The caller reboots.
func (b *Box) Fail(reason string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kind != BootTrial {
		return fmt.Errorf("update: slot %s is not on trial", b.slot)
	}
	st := b.state.clone()
	st.Pending.Failure = reason
	if err := st.Save(b.statePath); err != nil {
		return err
	}
	b.state = st
	return markBad(b.esp, b.slot)
}

// writeFiles removes the slot's entry, then writes its kernel and initramfs.
func writeFiles(esp FS, slot string, bu *Bundle, say func(string)) error {
	es, err := Entries(esp)
	if err != nil {
		return err
	}
	for _, e := range slotEntries(es, slot) {
		if err := esp.Remove(path.Join(EntriesDir, e.File)); err != nil {
			return fmt.Errorf("ESP: removing the old entry %s of slot %s: %w", e.File, slot, err)
		}
		say(fmt.Sprintf("slot %s: loader entry %s removed until the slot is written", slot, e.File))
	}
	return writeSlotFiles(esp, slot, bu, say)
}
