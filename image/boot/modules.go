package boot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshnode/meshnode/image/initramfs"
	"golang.org/x/sys/unix"
)

// loadModules loads every module named in dir's order file, in order, with
// finit_module. A module that fails (a CPU feature missing, hardware absent)
// is reported and skipped: the ones that matter show up later as a missing
// disk or NIC, with a clearer message.
func loadModules(dir string) (loaded, failed int) {
	b, err := os.ReadFile(filepath.Join(dir, initramfs.OrderFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0 // a kernel with everything built in
	}
	if err != nil {
		say("meshnode: init: modules: %v", err)
		return 0, 1
	}
	for _, name := range strings.Fields(string(b)) {
		if err := loadModule(filepath.Join(dir, name)); err != nil {
			say("meshnode: init: module %s: %v", name, err)
			failed++
			continue
		}
		loaded++
	}
	return loaded, failed
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}
