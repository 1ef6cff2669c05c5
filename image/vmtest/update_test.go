package vmtest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/image/build"
	"github.com/meshnode/meshnode/image/initramfs"
	"github.com/meshnode/meshnode/image/update"
	"github.com/meshnode/meshnode/mesh/updater"
	"github.com/meshnode/meshnode/scripts/netns"
)

// overlayInitramfs returns initrd followed by a second gzip'd newc archive
// holding files: the kernel unpacks concatenated archives in order, later
// files replacing earlier ones. It makes a new generation of the image
// without rebuilding it: the same kernel, the same /init, a new build
// record.
func overlayInitramfs(t *testing.T, initrd []byte, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.Write(initrd)
	zw := gzip.NewWriter(&buf)
	w := cpio.Newc.Writer(zw)
	var recs []cpio.Record
	for name, data := range files {
		recs = append(recs, cpio.StaticRecord(data, cpio.Info{Name: name, Mode: cpio.S_IFREG | 0o644, FileSize: uint64(len(data))}))
	}
	if err := cpio.WriteRecords(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// releaseBundle writes an update bundle of im's kernel and cmdline with
// the given initramfs, generation and version, signed by the admin's CA.
func releaseBundle(t *testing.T, im *image, adminState string, gen uint64, version string, initrd []byte) string {
	t.Helper()
	kernel, err := os.ReadFile(filepath.Join(im.dir, "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := update.NewBundle(gen, build.Arch, version, map[string][]byte{
		update.FileKernel: kernel, update.FileInitramfs: initrd, update.FileCmdline: []byte(im.man.Cmdline + "\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	signWithAdmin(t, b, adminState)
	dir := filepath.Join(t.TempDir(), fmt.Sprintf("update-%d", gen))
	if err := b.Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func signWithAdmin(t *testing.T, b *update.Bundle, adminState string) {
	t.Helper()
	sd := identity.StateDir(adminState)
	trust, err := identity.LoadTrust(sd.CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := os.ReadFile(sd.CAKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.ParseCAKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sign(key, trust.Public, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
}

// generation2 is im's release as generation 2: the same kernel, an
// initramfs whose build record says vmtest-2.
func generation2(t *testing.T, im *image, adminState string) string {
	t.Helper()
	initrd, err := os.ReadFile(filepath.Join(im.dir, "initrd.img"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := json.Marshal(map[string]any{"version": "vmtest-2", "generation": 2, "kernel": im.man.Kernel.Release, "epoch": im.man.Epoch})
	return releaseBundle(t, im, adminState, 2, "vmtest-2", overlayInitramfs(t, initrd, map[string][]byte{initramfs.InfoFile: append(info, '\n')}))
}

// crashing is a release whose initramfs has no usable /init: the kernel
// panics ("No working init found") and reboots (panic=10) every time.
func crashing(t *testing.T, im *image, adminState string, gen uint64) string {
	t.Helper()
	initrd, err := initramfs.Bytes(initramfs.Spec{Init: []byte("#!/nonexistent/interpreter\n"), MTime: 1767225600})
	if err != nil {
		t.Fatal(err)
	}
	return releaseBundle(t, im, adminState, gen, fmt.Sprintf("vmtest-crash-%d", gen), initrd)
}

// updateStatus is edge's entry in the admin's `meshnode update status --json`.
func updateStatus(t *testing.T, ns *netns.NS, bin, state, edge string) (updater.NodeStatus, error) {
	out, err := ns.Run(bin, "update", "status", "--json", "--wait", "2s", "--state", state)
	if err != nil {
		return updater.NodeStatus{}, fmt.Errorf("update status: %v: %s", err, out)
	}
	var all []updater.NodeStatus
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		return updater.NodeStatus{}, fmt.Errorf("update status: %v: %s", err, out)
	}
	for _, s := range all {
		if s.Name == edge {
			return s, nil
		}
	}
	return updater.NodeStatus{}, fmt.Errorf("%s did not answer: %s", edge, out)
}

// waitUpdateStatus polls the admin's update status until ok(edge's entry).
func waitUpdateStatus(t *testing.T, ns *netns.NS, bin, state, edge string, d time.Duration, ok func(updater.NodeStatus) error) updater.NodeStatus {
	t.Helper()
	var got updater.NodeStatus
	pollOutput(t, d, func() (string, error) {
		s, err := updateStatus(t, ns, bin, state, edge)
		if err != nil {
			return "", err
		}
		got = s
		b, _ := json.Marshal(s)
		return string(b), ok(s)
	})
	return got
}

// TestApplianceUpdate is the update story on one appliance, booted by UEFI
// with reboots allowed, against a real admin node in a namespace; one
// image is built for all of it and each new generation costs only a new
// initramfs:
//
//  1. refusals: manifests with a bad signature, for another architecture
//     or of an older generation are refused with a clear message on the
//     box's console and in `update push`, and nothing is written (the
//     box's loader entries stay as they were);
//  2. publish: generation 2 published through JetStream is downloaded,
//     written to slot b, rebooted into, blessed once healthy, and the
//     admin sees it in `update status`;
//  3. rollback: a pushed generation 3 whose initramfs cannot start crashes
//     every boot of slot a; systemd-boot falls back to b by itself, and
//     the admin sees "rolled back";
//  4. power cut: qemu is killed while generation 4 is being written to
//     slot a; the box still boots b and says the install was interrupted.
func TestApplianceUpdate(t *testing.T) {
	requireImageTools(t)
	im := productImage(t)
	bin := meshnodeBin(t, im)
	ns, state := startAdmin(t, bin)
	token := lastLine(pollOutput(t, time.Minute, func() (string, error) { return ns.Run(bin, "invite", "--state", state) }))
	img := copyImage(t, im)
	if out, err := exec.Command(bin, "image", "configure", "--image", img, "--name", "edge-1",
		"--join", "10.0.2.2:51821", "--token", token).CombinedOutput(); err != nil {
		t.Fatalf("configure: %v\n%s", err, out)
	}
	start := time.Now()
	gen2 := generation2(t, im, state)
	crash3 := crashing(t, im, state, 3)
	t.Logf("bundles written in %s: generation 2 is %s", time.Since(start).Round(100*time.Millisecond), bundleSize(t, gen2))

	v := startQemu(t, ns, img, nil, true)
	v.expect(`^meshnode: init: update: slot a runs generation 1 \(vmtest\), floor 1`, 2*bootDeadline)
	overlay := v.expect(`^meshnode: ready name=edge-1 overlay=(\S+)`, 2*bootDeadline)[1]
	v.expect(`^meshnode: init: slot a marked good`, time.Minute)
	waitMember(t, ns, bin, state, "edge-1", overlay)
	t.Logf("generation 1 up and joined after %s", time.Since(v.started).Round(100*time.Millisecond))
	waitUpdateStatus(t, ns, bin, state, "edge-1", time.Minute, func(s updater.NodeStatus) error {
		if s.Phase != updater.PhaseIdle || s.Generation != 1 || s.Slot != "a" {
			return fmt.Errorf("want idle on generation 1 in slot a")
		}
		return nil
	})

	t.Run("refused", func(t *testing.T) {
		badSig := copyBundle(t, gen2)
		raw, _ := os.ReadFile(filepath.Join(badSig, update.ManifestFile))
		raw[len(raw)-1] ^= 0x01 // the last byte of the signature
		os.WriteFile(filepath.Join(badSig, update.ManifestFile), raw, 0o644)

		arm := copyBundle(t, gen2)
		b, err := update.ReadBundle(arm)
		if err != nil {
			t.Fatal(err)
		}
		b.Manifest.Arch = "arm64"
		signWithAdmin(t, b, state)
		if err := update.WriteManifest(arm, b.Manifest); err != nil {
			t.Fatal(err)
		}

		old := copyBundle(t, gen2)
		b, _ = update.ReadBundle(old)
		b.Manifest.Generation = 1
		signWithAdmin(t, b, state)
		update.WriteManifest(old, b.Manifest)

		for _, tc := range []struct{ name, dir, want string }{
			{"bad signature", badSig, `bad signature: the mesh CA's signature does not verify`},
			{"wrong architecture", arm, `wrong architecture: built for arm64, this box is amd64`},
			{"older generation", old, `generation not newer than the installed one: this box has generation 1`},
		} {
			out, err := ns.Run(bin, "update", "push", tc.dir, "--to", "edge-1", "--unchecked", "--state", state)
			if err == nil || !strings.Contains(out, "edge-1 refused it") || !strings.Contains(out, tc.want) {
				t.Errorf("%s: push: %v\n%s\nwant a refusal saying %q", tc.name, err, out, tc.want)
			}
			v.expect(`^meshnode: update: refused: .*`+regexp.QuoteMeta(tc.want), time.Minute)
		}
		// The admin's own check refuses the bad signature before sending.
		if out, err := ns.Run(bin, "update", "push", badSig, "--to", "edge-1", "--state", state); err == nil || !strings.Contains(out, "bad signature") {
			t.Errorf("push of a bad signature without --unchecked: %v\n%s", err, out)
		}
		s, err := updateStatus(t, ns, bin, state, "edge-1")
		if err != nil || s.Phase != updater.PhaseRefused || !strings.Contains(s.Message, "this box has generation 1") {
			t.Errorf("status after the refusals: %+v %v", s, err)
		}
		v.absent(`^meshnode: update: (writing|downloading|receiving)`)
	})

	t.Run("publish", func(t *testing.T) {
		start := time.Now()
		out, err := ns.Run(bin, "update", "publish", gen2, "--state", state)
		if err != nil {
			t.Fatalf("publish: %v\n%s", err, out)
		}
		t.Logf("published in %s: %s", time.Since(start).Round(100*time.Millisecond), lastLine(out))
		v.expect(`^meshnode: update: downloading update generation 2 \(vmtest-2\)`, 2*time.Minute)
		v.expect(`^meshnode: update: update generation 2 \(vmtest-2\) written to slot b \(loader entry meshnode-b\+3\.conf\)`, 5*time.Minute)
		t.Logf("downloaded and written %s after the publish", time.Since(start).Round(100*time.Millisecond))
		v.expect(`^meshnode: update: rebooting: `, time.Minute)
		v.expect(`^meshnode: init: update: slot b runs generation 2 \(vmtest-2\), floor 2`, 2*bootDeadline)
		v.expect(`^meshnode: init: update: trial: slot b on trial for generation 2 \(vmtest-2\), boot 1`, time.Minute)
		v.expect(`^meshnode: init: slot b is on trial`, 2*bootDeadline)
		v.expect(`^meshnode: update: slot b marked good: generation 2 \(vmtest-2\) healthy after`, 5*time.Minute)
		t.Logf("publish → blessed: %s", time.Since(start).Round(100*time.Millisecond))
		s := waitUpdateStatus(t, ns, bin, state, "edge-1", 2*time.Minute, func(s updater.NodeStatus) error {
			if s.Phase != updater.PhaseBlessed || s.Generation != 2 || s.Release != "vmtest-2" || s.Slot != "b" || s.Floor != 2 {
				return fmt.Errorf("want blessed generation 2 in slot b")
			}
			return nil
		})
		t.Logf("admin sees: %+v", s)
		out, _ = ns.Run(bin, "update", "status", "--state", state)
		t.Logf("meshnode update status:\n%s", out)
		if !strings.Contains(out, "vmtest-2 (gen 2)") || !strings.Contains(out, "blessed") {
			t.Errorf("update status table:\n%s", out)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("rollback", func(t *testing.T) {
		start := time.Now()
		out, err := ns.Run(bin, "update", "push", crash3, "--to", "edge-1", "--state", state)
		if err != nil {
			t.Fatalf("push: %v\n%s", err, out)
		}
		t.Logf("pushed in %s: %s", time.Since(start).Round(100*time.Millisecond), lastLine(out))
		v.expect(`^meshnode: update: rebooting: `, time.Minute)
		for try := 1; try <= update.Tries; try++ {
			v.expect(`(Kernel panic|No working init found)`, 2*bootDeadline)
			t.Logf("slot a crash %d after %s", try, time.Since(start).Round(100*time.Millisecond))
		}
		v.expect(`^meshnode: init: update: rolled back: generation 3 \(vmtest-crash-3\) rolled back: slot a never started the node`, 2*bootDeadline)
		v.expect(`^meshnode: update: rolled back: slot a never started the node .*meshnode-a\+0-3\.conf`, 2*time.Minute)
		t.Logf("push → rolled back: %s", time.Since(start).Round(100*time.Millisecond))
		waitUpdateStatus(t, ns, bin, state, "edge-1", 2*time.Minute, func(s updater.NodeStatus) error {
			if s.Phase != updater.PhaseRolledBack || s.Generation != 2 || s.Slot != "b" || s.Target != 3 || !strings.Contains(s.Message, "never started the node") {
				return fmt.Errorf("want rolled back from generation 3, running 2 in slot b")
			}
			return nil
		})
		out, _ = ns.Run(bin, "update", "status", "--state", state)
		t.Logf("meshnode update status:\n%s", out)
	})
	if t.Failed() {
		return
	}

	t.Run("power-cut", func(t *testing.T) {
		gen4 := releaseBundle(t, im, state, 4, "vmtest-4", mustRead(t, filepath.Join(gen2, update.FileInitramfs)))
		push := ns.Command(bin, "update", "push", gen4, "--to", "edge-1", "--state", state)
		if err := push.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = push.Process.Kill(); _ = push.Wait() }() // it waits for an answer that never comes
		v.expect(`^meshnode: update: writing update generation 4 \(vmtest-4\) to slot a`, 5*time.Minute)
		v.expect(`^meshnode: update: slot a: loader entry meshnode-a\+0-3\.conf removed`, time.Minute)
		v.expect(`^meshnode: update: slot a: writing initrd\.img`, time.Minute)
		v.kill() // mid-write: the initramfs is 20 MB
		v.absent(`^meshnode: update: update generation 4 .* written to slot`)
		entries := strings.Join(listESP(t, img, "loader/entries"), " ")
		t.Logf("entries after the cut: %s", entries)
		if strings.Contains(entries, "meshnode-a") {
			t.Fatalf("slot a has an entry after a cut mid-write: %s", entries)
		}
		v = startQemu(t, ns, img, nil, true)
		v.expect(`^meshnode: init: update: slot b runs generation 2 \(vmtest-2\)`, 2*bootDeadline)
		v.expect(`^meshnode: init: update: interrupted: generation 4 \(vmtest-4\) interrupted: the box restarted while slot a was being written`, time.Minute)
		v.expect(`^meshnode: ready name=edge-1 overlay=`+regexp.QuoteMeta(overlay), 2*bootDeadline)
		waitUpdateStatus(t, ns, bin, state, "edge-1", 3*time.Minute, func(s updater.NodeStatus) error {
			if s.Phase != updater.PhaseInterrupted || s.Generation != 2 {
				return fmt.Errorf("want interrupted, running generation 2")
			}
			return nil
		})
	})
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyBundle copies a bundle directory for a test to change.
func copyBundle(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(dir))
	if out, err := exec.Command("cp", "-r", dir, dst).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return dst
}

func bundleSize(t *testing.T, dir string) string {
	b, err := update.ReadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%.1f MB", float64(b.Manifest.TotalSize())/1e6)
}
