package vmtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/image/config"
	"github.com/meshnode/meshnode/scripts/netns"
)

// meshnodeBin returns the static meshnode binary that productImage put in
// the image, so the CLI under test is the same one that runs as /init.
func meshnodeBin(t *testing.T, im *image) string {
	t.Helper()
	return filepath.Join(im.dir, "init")
}

// TestImageConfigureCLI drives `meshnode image configure` on an image file:
// it writes the config PID 1 reads, and refuses what is not a meshnode image.
func TestImageConfigureCLI(t *testing.T) {
	requireImageTools(t)
	im := productImage(t)
	bin := meshnodeBin(t, im)
	img := copyImage(t, im)
	out, err := exec.Command(bin, "image", "configure", "--image", img, "--name", "edge-9", "--join", "192.0.2.1:51821",
		"--token", "tok-cli", "--static-ip", "192.0.2.9/24", "--gateway", "192.0.2.1", "--dns", "192.0.2.53").CombinedOutput()
	if err != nil {
		t.Fatalf("configure: %v\n%s", err, out)
	}
	c, err := config.Parse("esp", []byte(readESP(t, img, config.Path)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "edge-9" || c.Token != "tok-cli" || c.Network.UseDHCP() || c.Network.Address != "192.0.2.9/24" || c.Network.Gateway != "192.0.2.1" {
		t.Fatalf("config written: %+v", c)
	}

	plain := filepath.Join(t.TempDir(), "plain.img")
	if err := os.WriteFile(plain, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--image", plain, "--name", "a", "--join", "p", "--token", "t"}, "not a meshnode image"},
		{[]string{"--image", img, "--name", "a", "--join", "p"}, "--token are required"},
		{[]string{"--image", img, "--disk", "/dev/null", "--name", "a", "--join", "p", "--token", "t"}, "exactly one of"},
		{[]string{"--disk", img, "--name", "a", "--join", "p", "--token", "t"}, "not a block device"},
		{[]string{"--image", img, "--name", "bad name", "--join", "p", "--token", "t"}, "name"},
	} {
		out, err := exec.Command(bin, append([]string{"image", "configure"}, tc.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("configure %v: err %v, output %q, want %q", tc.args, err, out, tc.want)
		}
	}
}

// TestApplianceProductInit boots the product binary as PID 1 with a join
// config pointing at a peer that is not there: PID 1 must get through
// modules, partitions, perm, config and DHCP, hand over to the node runner,
// and report the runner's failure with a retry, never a fatal reboot. (Until
// the appliance runner is wired the failure is "node not wired"; after, it
// is the unreachable peer.)
func TestApplianceProductInit(t *testing.T) {
	requireImageTools(t)
	im := productImage(t)
	img := copyImage(t, im)
	if out, err := exec.Command(meshnodeBin(t, im), "image", "configure", "--image", img,
		"--name", "edge-p", "--join", "10.0.2.2:51821", "--token", "tok-product").CombinedOutput(); err != nil {
		t.Fatalf("configure: %v\n%s", err, out)
	}
	v := bootDirect(t, im, img)
	v.expect(`^meshnode: init: network eth0 10\.0\.2\.15/24 gateway 10\.0\.2\.2 .*\(dhcp\)`, bootDeadline)
	v.expect(`^meshnode: init: ready name=edge-p slot=a first_boot=true`, time.Minute)
	m := v.expect(`^meshnode: (node|config error): (.*) \(retrying in`, 2*time.Minute)
	t.Logf("runner: %s", m[2])
	v.absent(`^meshnode: (fatal|ready)`)
}

// joinTestEnabled turns on TestApplianceJoinsMesh. It needs the appliance
// node runner (cmd/meshnode/pid1.go runAppliance) to run the real node;
// set it to true when that lands.
const joinTestEnabled = false

// TestApplianceJoinsMesh is the end-to-end appliance test: an admin node
// runs in a network namespace on its loopback; qemu runs in the same
// namespace, so the guest reaches it as 10.0.2.2 through user-mode
// networking. The image is configured with a fresh token; the guest must
// print its ready line, the admin must see it; after a power cut the guest
// comes back with the same identity, without a token.
func TestApplianceJoinsMesh(t *testing.T) {
	if !joinTestEnabled {
		t.Skip("the appliance node runner is not wired yet (cmd/meshnode/pid1.go); enable joinTestEnabled when it is")
	}
	requireImageTools(t)
	im := productImage(t)
	bin := meshnodeBin(t, im)
	ns := netns.New(t, "join")
	if out, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	state := t.TempDir()
	iface := netns.Unique("mnadm")
	if out, err := ns.Run(bin, "init", "--state", state, "--name", "admin", "--mesh", "vmtest"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	up := ns.Command(bin, "up", "--state", state, "--iface", iface, "--enroll-addr", "127.0.0.1:51821",
		"--bootstrap-expect", "1", "--fast-timers")
	upLog, err := os.Create(filepath.Join(t.TempDir(), "admin.log"))
	if err != nil {
		t.Fatal(err)
	}
	up.Stdout, up.Stderr = upLog, upLog
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Process.Kill(); _ = up.Wait() })
	token := pollOutput(t, 30*time.Second, func() (string, error) { return ns.Run(bin, "invite", "--state", state) })
	token = strings.TrimSpace(lastLine(token))

	img := copyImage(t, im)
	if out, err := exec.Command(bin, "image", "configure", "--image", img, "--name", "edge-1",
		"--join", "10.0.2.2:51821", "--token", token).CombinedOutput(); err != nil {
		t.Fatalf("configure: %v\n%s", err, out)
	}
	v := startVMIn(t, ns, img, nil)
	overlay := v.expect(`^meshnode: ready name=edge-1 overlay=(\S+)`, 2*bootDeadline)[1]
	pollOutput(t, 2*time.Minute, func() (string, error) {
		out, err := ns.Run(bin, "status", "--state", state)
		if err == nil && !(strings.Contains(out, "edge-1") && strings.Contains(out, overlay)) {
			err = fmt.Errorf("edge-1 (%s) not in status yet", overlay)
		}
		return out, err
	})
	v.kill()
	if c := readESP(t, img, config.Path); strings.Contains(c, token) {
		t.Errorf("token still on the ESP after the join:\n%s", c)
	}
	v = startVMIn(t, ns, img, nil)
	if got := v.expect(`^meshnode: ready name=edge-1 overlay=(\S+)`, 2*bootDeadline)[1]; got != overlay {
		t.Errorf("second boot overlay %s, first %s", got, overlay)
	}
}

func pollOutput(t *testing.T, d time.Duration, f func() (string, error)) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		out, err := f()
		if err == nil {
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("after %s: %v\n%s", d, err, out)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func lastLine(s string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	return last
}
