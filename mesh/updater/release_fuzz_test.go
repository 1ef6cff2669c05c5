package updater

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeRelease: the "latest" key is written by whoever may publish
// into the update bucket, so its decoder must refuse anything malformed
// without panicking, and what it accepts must be a release this build
// reads (format, reboot policy, a manifest that parses) and must survive
// its own encoding unchanged.
func FuzzDecodeRelease(f *testing.F) {
	f.Add([]byte(`{"format":1,"manifest":"","reboot":"now"}`))
	f.Add([]byte(`{"format":1,"manifest":"AQ==","reboot":"at 03:00","names":["edge-1"],"percent":10}`))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, m, err := decodeRelease(b)
		if err != nil {
			return
		}
		if r.Format != ReleaseFormat || m == nil {
			t.Fatalf("accepted a release with format %d, manifest %v", r.Format, m)
		}
		if _, err := ParseReboot(r.Reboot); err != nil {
			t.Fatalf("accepted reboot policy %q: %v", r.Reboot, err)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := decodeRelease(again); err != nil {
			t.Fatalf("an accepted release does not decode after encoding: %v", err)
		}
	})
}
