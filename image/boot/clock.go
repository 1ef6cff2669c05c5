package boot

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/image/initramfs"
	"golang.org/x/sys/unix"
)

// clockFile on perm holds the last known time, so a box without a working
// RTC does not start in 1970 (where every certificate is "not yet valid").
const clockFile = "meshnode-clock"

// clockFloor is the latest of the image's build time and the saved clock.
func clockFloor(perm, buildInfo string) time.Time {
	var floor time.Time
	if b, err := os.ReadFile(buildInfo); err == nil {
		var bi struct{ Epoch int64 }
		if json.Unmarshal(b, &bi) == nil && bi.Epoch > 0 {
			floor = time.Unix(bi.Epoch, 0)
		}
	}
	if b, err := os.ReadFile(filepath.Join(perm, clockFile)); err == nil {
		if s, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && time.Unix(s, 0).After(floor) {
			floor = time.Unix(s, 0)
		}
	}
	return floor
}

func restoreClock(perm string) {
	floor := clockFloor(perm, "/"+initramfs.InfoFile)
	now := time.Now()
	if floor.IsZero() || !now.Before(floor) {
		say("meshnode: init: clock %s", now.UTC().Format(time.RFC3339))
		return
	}
	tv := unix.NsecToTimeval(floor.UnixNano())
	if err := unix.Settimeofday(&tv); err != nil {
		say("meshnode: init: clock %s is behind the last known time %s and cannot be set: %v", now.UTC().Format(time.RFC3339), floor.UTC().Format(time.RFC3339), err)
		return
	}
	say("meshnode: init: clock was %s, set forward to the last known time %s", now.UTC().Format(time.RFC3339), floor.UTC().Format(time.RFC3339))
}

func saveClock(perm string) error {
	return writeFileSync(filepath.Join(perm, clockFile), []byte(strconv.FormatInt(time.Now().Unix(), 10)+"\n"), 0o644)
}

func saveClockLoop(perm string) {
	for {
		if err := saveClock(perm); err != nil {
			say("meshnode: init: saving the clock: %v", err)
		}
		time.Sleep(ClockSaveEvery)
	}
}
