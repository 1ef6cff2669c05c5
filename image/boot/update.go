package boot

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/meshnode/meshnode/image/initramfs"
	"github.com/meshnode/meshnode/image/update"
	"golang.org/x/sys/unix"
)

// UpdateStateFile is the update record on perm (image/update.State): the
// generation floor and any pending update. It sits beside the state
// directory, not in it, because it belongs to the box, not to the node's
// identity.
const UpdateStateFile = "meshnode-update.json"

// Watchdog timings: the hardware watchdog resets the box when PID 1 has not
// written to it for WatchdogTimeout (a hung kernel, a wedged runtime), so
// that a slot on trial that hangs still uses up its boot tries.
var (
	WatchdogDevice  = "/dev/watchdog"
	WatchdogTimeout = 60 * time.Second
)

// TrialLimit bounds a trial boot from PID 1, whatever the node does: the
// update agent fails a slot that is not healthy within its own deadline
// (10 minutes); this catches a node that never gets as far as running it.
var TrialLimit = 15 * time.Minute

// running reads what this slot runs from the initramfs's build record.
func running(buildInfo string) update.Running {
	var bi struct {
		Version    string `json:"version"`
		Generation uint64 `json:"generation"`
	}
	if b, err := os.ReadFile(buildInfo); err == nil {
		_ = json.Unmarshal(b, &bi)
	}
	return update.Running{Generation: bi.Generation, Release: bi.Version}
}

// openUpdate opens the box's update state once the ESP and perm are
// mounted, and says what this boot is when it is not an ordinary one. A
// box whose record cannot be read still boots: it only takes no update.
func (p *prepared) openUpdate() {
	run := running("/" + initramfs.InfoFile)
	box, err := update.Open(update.BoxConfig{
		ESP: update.DirFS(BootMount), StatePath: filepath.Join(PermMount, UpdateStateFile),
		Slot: p.slot, Running: run, Arch: runtime.GOARCH,
		Say: func(line string) { say("meshnode: update: %s", line) },
	}, time.Now())
	if err != nil {
		say("meshnode: init: update: %v (no update is taken this boot)", err)
		return
	}
	p.update = box
	say("meshnode: init: update: slot %s runs generation %d (%s), floor %d", p.slot, run.Generation, run.Release, box.Floor())
	if s := box.Summary(); s != "" {
		say("meshnode: init: update: %s: %s", box.Kind(), s)
	}
	if box.Kind() == update.BootTrial {
		go p.limitTrial(box)
	}
}

// limitTrial fails the trial and reboots into the other slot if the slot
// is still on trial TrialLimit after the boot.
func (p *prepared) limitTrial(box *update.Box) {
	time.Sleep(TrialLimit)
	if box.Kind() != update.BootTrial {
		return // blessed
	}
	reason := fmt.Sprintf("slot %s was not marked good within %s of its boot (the node never got healthy)", p.slot, TrialLimit)
	if err := box.Fail(reason); err != nil {
		say("meshnode: init: update: marking slot %s bad: %v", p.slot, err)
	}
	say("meshnode: init: update: %s: rebooting into slot %s", reason, update.Other(p.slot))
	reboot()
}

// startWatchdog arms the hardware watchdog when the box has one and feeds it
// from PID 1 for as long as the box runs.
func startWatchdog() {
	f, err := os.OpenFile(WatchdogDevice, os.O_WRONLY, 0)
	if err != nil {
		return // no watchdog: nothing to arm
	}
	secs := int(WatchdogTimeout / time.Second)
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, secs); err != nil {
		say("meshnode: init: watchdog %s: cannot set a %ds timeout: %v (using the driver's)", WatchdogDevice, secs, err)
	}
	say("meshnode: init: watchdog %s armed (%s)", WatchdogDevice, WatchdogTimeout)
	go func() {
		for {
			if _, err := f.Write([]byte{0}); err != nil {
				say("meshnode: init: watchdog %s: %v", WatchdogDevice, err)
			}
			time.Sleep(WatchdogTimeout / 4)
		}
	}()
}
