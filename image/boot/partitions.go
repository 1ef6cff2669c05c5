package boot

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// findPartitions polls sysfs until every wanted GPT partition name has a
// block device, or the deadline passes (USB and NVMe disks can take seconds
// to appear). It returns name -> kernel device name (e.g. "vda2").
func findPartitions(sysBlock string, wait time.Duration, want map[string]bool) (map[string]string, error) {
	deadline := time.Now().Add(wait)
	for {
		found, dup := scanPartitions(sysBlock, want)
		if dup != "" {
			return nil, fmt.Errorf("two partitions are named %s (%s): unplug the other meshnode disk", dup, found[dup])
		}
		if len(found) == len(want) {
			return found, nil
		}
		if time.Now().After(deadline) {
			var missing []string
			for n := range want {
				if _, ok := found[n]; !ok {
					missing = append(missing, n)
				}
			}
			sort.Strings(missing)
			return nil, fmt.Errorf("no GPT partition named %s after %s (disks: %s)", strings.Join(missing, ", "), wait, listDisks(sysBlock))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func scanPartitions(sysBlock string, want map[string]bool) (found map[string]string, dup string) {
	found = map[string]string{}
	ents, _ := os.ReadDir(sysBlock)
	for _, e := range ents {
		name := partName(filepath.Join(sysBlock, e.Name(), "uevent"))
		if !want[name] {
			continue
		}
		if prev, ok := found[name]; ok {
			found[name] = prev + ", " + e.Name()
			dup = name
			continue
		}
		found[name] = e.Name()
	}
	return found, dup
}

// partName reads PARTNAME= (the GPT partition name) from a uevent file.
func partName(uevent string) string {
	f, err := os.Open(uevent)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PARTNAME="); ok {
			return v
		}
	}
	return ""
}

func listDisks(sysBlock string) string {
	ents, _ := os.ReadDir(sysBlock)
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, " ")
}
