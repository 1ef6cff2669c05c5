package vmtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/image/config"
	"github.com/meshnode/meshnode/scripts/netns"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
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

	t.Run("block-device", func(t *testing.T) { configureLoopDevice(t, bin, copyImage(t, im)) })

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

// configureLoopDevice attaches img to a loop device and configures it with
// --disk, the way an operator configures a flashed USB stick.
func configureLoopDevice(t *testing.T, bin, img string) {
	losetup := netnstest.RequireTool(t, "losetup")
	out, err := exec.Command(losetup, "--find", "--show", img).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no loop device: %v: %s", err, out)
		}
		t.Skipf("no loop device: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command(losetup, "-d", dev).Run() })
	if out, err := exec.Command(bin, "image", "configure", "--disk", dev, "--name", "edge-usb", "--join", "192.0.2.1",
		"--token", "tok-usb").CombinedOutput(); err != nil {
		t.Fatalf("configure --disk %s: %v\n%s", dev, err, out)
	}
	if err := exec.Command(losetup, "-d", dev).Run(); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("esp", []byte(readESP(t, img, config.Path)))
	if err != nil || c.Name != "edge-usb" || c.Token != "tok-usb" {
		t.Fatalf("after configure --disk: %+v %v", c, err)
	}
}

// TestApplianceProductInit boots the product binary as PID 1 with join
// configs that cannot work: PID 1 must get through modules, partitions,
// perm, config and DHCP, hand over to the node runner, and then print the
// runner's failure with a retry, never a fatal reboot or a ready line. A
// well-formed token for a peer that is not there is retried as a node error
// (the peer may come back); a malformed token is reported as such.
func TestApplianceProductInit(t *testing.T) {
	requireImageTools(t)
	im := productImage(t)
	var fp, secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		t.Fatal(err)
	}
	wellFormed := identity.Invite{CAFingerprint: fp, Secret: secret}.String()
	for _, tc := range []struct{ name, token, want string }{
		{"unreachable-peer", wellFormed, `^meshnode: node: .*10\.0\.2\.2:51821.* \(retrying in`},
		{"malformed-token", "tok-product", `^meshnode: (node|config error): .*join token is malformed.* \(retrying in`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := copyImage(t, im)
			if out, err := exec.Command(meshnodeBin(t, im), "image", "configure", "--image", img,
				"--name", "edge-p", "--join", "10.0.2.2:51821", "--token", tc.token).CombinedOutput(); err != nil {
				t.Fatalf("configure: %v\n%s", err, out)
			}
			v := bootDirect(t, im, img)
			v.expect(`^meshnode: init: network eth0 10\.0\.2\.15/24 gateway 10\.0\.2\.2 .*\(dhcp\)`, bootDeadline)
			v.expect(`^meshnode: init: ready name=edge-p slot=a first_boot=true`, time.Minute)
			v.expect(tc.want, 2*time.Minute)
			v.expect(tc.want, 2*time.Minute) // and again: it is a retry loop
			v.absent(`^meshnode: (fatal|ready)`)
		})
	}
}

// TestApplianceJoinsMesh is the end-to-end appliance test: an admin node
// runs in a network namespace and listens on its loopback; qemu runs in the
// same namespace, so the guest reaches it as 10.0.2.2 through user-mode
// networking (UDP included: no restrict=on). The image is configured with a
// fresh token. The guest must print its ready line; the admin must see it
// alive with a WireGuard handshake and a NATS route to its embedded server,
// and a stream created on the admin with two replicas must have one on the
// guest.
// After a power cut the guest comes back with the same identity, no token
// on the ESP, and its replica of the stream current again.
func TestApplianceJoinsMesh(t *testing.T) {
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
	v := startVMIn(t, ns, img, nil)
	overlay := v.expect(`^meshnode: ready name=edge-1 overlay=(\S+)`, 2*bootDeadline)[1]
	t.Logf("first boot: ready after %s", time.Since(v.started).Round(100*time.Millisecond))
	waitMember(t, ns, bin, state, "edge-1", overlay)
	t.Logf("first boot: admin sees edge-1 alive with a handshake and a NATS route after %s", time.Since(v.started).Round(100*time.Millisecond))
	// A JetStream stream with a replica on each node: the guest's embedded
	// server must hold one.
	pollOutput(t, 2*time.Minute, func() (string, error) {
		return ns.Run(bin, "nats", "--state", state, "stream-add", "VMTEST", "vmtest.>", "2")
	})
	waitReplica(t, ns, bin, state, "VMTEST", "edge-1")
	t.Logf("first boot: stream VMTEST has a current replica on edge-1 after %s", time.Since(v.started).Round(100*time.Millisecond))
	v.kill()
	if c := readESP(t, img, config.Path); strings.Contains(c, token) {
		t.Errorf("token still on the ESP after the join:\n%s", c)
	}

	v = startVMIn(t, ns, img, nil)
	if got := v.expect(`^meshnode: ready name=edge-1 overlay=(\S+)`, 2*bootDeadline)[1]; got != overlay {
		t.Errorf("second boot overlay %s, first %s: identity not kept on perm", got, overlay)
	}
	v.absent(`^meshnode: (fatal|config error)`)
	waitMember(t, ns, bin, state, "edge-1", overlay)
	waitReplica(t, ns, bin, state, "VMTEST", "edge-1")
	t.Logf("second boot: rejoined after %s", time.Since(v.started).Round(100*time.Millisecond))
}

// startAdmin runs an admin node (the mesh's first, holding the CA) in a
// fresh network namespace, listening on its loopback: qemu started in the
// same namespace reaches it as 10.0.2.2 through user-mode networking (UDP
// included: no restrict=on). It returns the namespace and the admin's
// state directory; the node is stopped with SIGTERM at the end of the test.
func startAdmin(t *testing.T, bin string) (*netns.NS, string) {
	t.Helper()
	ns := netnstest.New(t, "join")
	if out, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	state := t.TempDir()
	iface := netns.Unique("mnadm")
	node := []string{"--state", state, "--iface", iface, "--enroll-addr", "127.0.0.1:51821",
		// What the guest dials: slirp's name for the namespace's loopback.
		"--endpoint", "10.0.2.2:51820", "--fast-timers"}
	if out, err := ns.Run(bin, append([]string{"init", "--name", "admin", "--mesh", "vmtest", "--bootstrap-expect", "1"}, node...)...); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	logf := filepath.Join(t.TempDir(), "admin.log")
	upLog, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	up := ns.Command(bin, append([]string{"up", "--bootstrap-expect", "1"}, node...)...)
	up.Stdout, up.Stderr = upLog, upLog
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = up.Wait(); close(exited) }()
	t.Cleanup(func() {
		// SIGTERM first: the daemon removes its interface and UAPI socket
		// (the socket directory is shared by every namespace on the host).
		_ = up.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			t.Errorf("admin node did not stop within 15 s of SIGTERM; killing it")
			_ = up.Process.Kill()
			<-exited
		}
		if _, err := os.Stat("/var/run/wireguard/" + iface + ".sock"); err == nil {
			t.Errorf("admin node left /var/run/wireguard/%s.sock behind", iface)
			os.Remove("/var/run/wireguard/" + iface + ".sock")
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf)
			t.Logf("admin log:\n%s", tailLines(string(b), 40))
		}
	})
	return ns, state
}

// waitReplica polls until stream has a current replica (or its leader) on node.
func waitReplica(t *testing.T, ns *netns.NS, bin, state, stream, node string) {
	t.Helper()
	pollOutput(t, time.Minute, func() (string, error) {
		out, err := ns.Run(bin, "nats", "--state", state, "stream-info", stream)
		if err != nil {
			return out, err
		}
		var info struct {
			Cluster struct {
				Leader   string `json:"leader"`
				Replicas []struct {
					Name    string `json:"name"`
					Current bool   `json:"current"`
				} `json:"replicas"`
			} `json:"cluster"`
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			return out, err
		}
		if info.Cluster.Leader == node {
			return out, nil
		}
		for _, r := range info.Cluster.Replicas {
			if r.Name == node && r.Current {
				return out, nil
			}
		}
		return out, fmt.Errorf("no current replica on %s yet", node)
	})
}

// waitMember polls the admin's status until name is alive at overlay with a
// WireGuard handshake and the admin's NATS route to it is up.
func waitMember(t *testing.T, ns *netns.NS, bin, state, name, overlay string) {
	t.Helper()
	pollOutput(t, 3*time.Minute, func() (string, error) {
		out, _ := ns.Run(bin, "status", "--json", "--state", state)
		var st struct {
			Members []struct {
				Name          string    `json:"name"`
				Addr          string    `json:"overlay_addr"`
				State         string    `json:"state"`
				LastHandshake time.Time `json:"last_handshake"`
			} `json:"members"`
			NATS struct {
				RoutesUp int `json:"routes_up"`
			} `json:"nats"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return out, fmt.Errorf("admin status: %w", err)
		}
		for _, m := range st.Members {
			if m.Name == name && m.Addr == overlay && m.State == "alive" && !m.LastHandshake.IsZero() {
				if st.NATS.RoutesUp < 1 {
					return out, fmt.Errorf("%s alive with a handshake, NATS route not up", name)
				}
				return out, nil
			}
		}
		return out, fmt.Errorf("%s (%s) not alive with a handshake yet", name, overlay)
	})
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
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
