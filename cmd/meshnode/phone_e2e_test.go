package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/meshnode/meshnode/scripts/netns"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
)

// TestPhoneE2E: a phone that is not meshnode (Debian's wireguard-go,
// configured with wg setconf from `wg-quick strip` of the generated config)
// peers with hub alpha only, pings beta (not its hub) through alpha,
// publishes on its subject with its NATS credential and a subscriber on
// beta gets it, is refused outside its grant, keeps working after its
// underlay address changes (roaming), and after `phone remove` reaches
// nothing within a deadline.
func TestPhoneE2E(t *testing.T) {
	lab := newLab(t)
	wggo := netnstest.RequireTool(t, "wireguard-go")
	netnstest.RequireTool(t, "wg-quick")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := lab.StartMesh(ctx, "phones", []string{"alpha", "beta"}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	alpha, beta := lab.Nodes[0], lab.Nodes[1]
	alphaAddr, betaAddr := overlayAddr(t, alpha), overlayAddr(t, beta)

	dir := t.TempDir()
	conf, pngPath := filepath.Join(dir, "pixel.conf"), filepath.Join(dir, "pixel.png")
	added := time.Now()
	out, err := alpha.Meshnode("phone", "add", "pixel", "--state", alpha.State, "--hub", "alpha", "--conf", conf, "--png", pngPath, "--ttl", "30d")
	if err != nil {
		t.Fatal(err)
	}
	addTook := time.Since(added)
	cfg, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(conf); fi.Mode().Perm() != 0o600 {
		t.Errorf("--conf written %v, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(out, string(cfg)) {
		t.Errorf("stdout does not show the config written to --conf")
	}
	if zbar, err := exec.LookPath("zbarimg"); err == nil {
		if got := zbarDecode(t, zbar, pngPath); got != string(cfg) {
			t.Errorf("--png decodes to %q, want the config %q", got, cfg)
		}
	}
	natsURL, seed := credField(t, out, "NATS_URL"), credField(t, out, "NATS_NKEY")

	// The phone: its own namespace on the same bridge (a different
	// network), a WireGuard that is not meshnode's.
	phone := netnstest.New(t, "ph")
	netnstest.Attach(t, lab.Bridge, phone, "eth0", "10.231.0.50/24")
	iface := netns.Unique("wp")
	wg := phone.Command(wggo, "-f", iface)
	wg.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1")
	wg.Stdout, wg.Stderr = os.Stderr, os.Stderr
	if err := wg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wg.Process.Kill(); wg.Wait(); os.Remove("/var/run/wireguard/" + iface + ".sock") })
	eventually(t, 10*time.Second, "wireguard-go's interface", func() error {
		_, err := phone.Run("ip", "link", "show", iface)
		return err
	})
	stripped, err := phone.Run("wg-quick", "strip", conf)
	if err != nil {
		t.Fatal(err)
	}
	strippedPath := filepath.Join(dir, "stripped.conf")
	if err := os.WriteFile(strippedPath, []byte(stripped), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, prefix := confField(t, string(cfg), "Address"), confField(t, string(cfg), "AllowedIPs")
	for _, c := range [][]string{
		{"wg", "setconf", iface, strippedPath},
		{"ip", "-6", "addr", "add", addr, "dev", iface, "nodad"},
		{"ip", "link", "set", iface, "mtu", confField(t, string(cfg), "MTU"), "up"},
		{"ip", "-6", "route", "add", prefix, "dev", iface},
	} {
		if _, err := phone.Run(c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	ping := func(to string) error {
		_, err := phone.Run("ping", "-6", "-c1", "-W1", to)
		return err
	}
	eventually(t, 30*time.Second, "the phone pings beta (not its hub) through alpha", func() error { return ping(betaAddr) })
	t.Logf("figure: phone add → first packet through the hub: %s (phone add itself %s)", time.Since(added).Round(time.Millisecond), addTook.Round(time.Millisecond))
	if err := ping(alphaAddr); err != nil {
		t.Errorf("the phone cannot ping its hub: %v", err)
	}

	// NATS: beta subscribes; the phone publishes with its credential.
	caPath := filepath.Join(alpha.State, "ca.crt")
	var subOut strings.Builder
	sub := beta.NS.Command(lab.Bin, "nats", "--state", beta.State, "--timeout", "40s", "sub", "phones.pixel.gps", "1")
	sub.Stdout = &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Wait() }()
	pub := phoneNATS(t, phone, "pub", natsURL, seed, caPath)
	select {
	case err := <-subDone:
		if err != nil || !strings.Contains(subOut.String(), "52.52,13.40") {
			t.Fatalf("subscriber on beta: %v, %q", err, subOut.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("the subscriber on beta got nothing from the phone")
	}
	pub.Process.Kill()
	pub.Wait()
	if out, err := phoneNATS(t, phone, "denied", natsURL, seed, caPath).CombinedOutput(); err != nil {
		t.Fatalf("publishing outside the grant was not refused: %v\n%s", err, out)
	}

	// Status and phone list on the hub show the phone with a handshake.
	st, err := alpha.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Phones) != 1 || st.Phones[0].Name != "pixel" || st.Phones[0].LastHandshake.IsZero() || st.Forwarding == "" {
		t.Errorf("alpha's status phones %+v, forwarding %q", st.Phones, st.Forwarding)
	}
	if out, err := alpha.Meshnode("phone", "list", "--state", alpha.State); err != nil || !strings.Contains(out, "pixel") || !strings.Contains(out, " ago") {
		t.Errorf("phone list on the hub: %v\n%s", err, out)
	}

	// Roaming: the phone moves to another underlay address.
	for _, c := range [][]string{
		{"ip", "addr", "del", "10.231.0.50/24", "dev", "eth0"},
		{"ip", "addr", "add", "10.231.0.77/24", "dev", "eth0"},
	} {
		if _, err := phone.Run(c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	roamed := time.Now()
	eventually(t, 30*time.Second, "the phone pings beta after roaming", func() error { return ping(betaAddr) })
	t.Logf("figure: roaming → ping again: %s", time.Since(roamed).Round(time.Millisecond))
	eventually(t, 10*time.Second, "the hub sees the phone's new endpoint", func() error {
		out, err := alpha.Meshnode("phone", "list", "--state", alpha.State, "--json")
		if err != nil || !strings.Contains(out, "10.231.0.77:") {
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	})

	// Removal: within a deadline the phone reaches nothing.
	removed := time.Now()
	if _, err := alpha.Meshnode("phone", "remove", "pixel", "--state", alpha.State); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the removed phone reaches nothing", func() error {
		for _, a := range []string{betaAddr, alphaAddr} {
			if ping(a) == nil {
				return fmt.Errorf("still pings %s", a)
			}
		}
		return nil
	})
	t.Logf("figure: phone remove → unreachable: %s", time.Since(removed).Round(time.Millisecond))
	if out, err := phoneNATS(t, phone, "connect", natsURL, seed, caPath).CombinedOutput(); err == nil {
		t.Errorf("the removed phone still connects to NATS:\n%s", out)
	}
	eventually(t, 10*time.Second, "every node forgets the removed phone", func() error {
		for _, n := range lab.Nodes {
			if out, err := n.Meshnode("phone", "list", "--state", n.State); err != nil || strings.Contains(out, "pixel") {
				return fmt.Errorf("%s: %v\n%s", n.Name, err, out)
			}
		}
		return nil
	})
}

func credField(t *testing.T, out, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + key + `=(\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("phone add printed no %s:\n%s", key, out)
	}
	return m[1]
}

func confField(t *testing.T, cfg, key string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(cfg))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " = "); ok && k == key {
			return v
		}
	}
	t.Fatalf("config has no %s:\n%s", key, cfg)
	return ""
}

// phoneNATS runs this test binary inside the phone's namespace as a NATS
// client with the phone's credential (TestPhoneNATSHelper). "pub" is
// started and left running; the others are returned unstarted.
func phoneNATS(t *testing.T, ns *netns.NS, mode, url, seed, ca string) *exec.Cmd {
	t.Helper()
	cmd := ns.Command(os.Args[0], "-test.run", "^TestPhoneNATSHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "PHONE_NATS_MODE="+mode, "PHONE_NATS_URL="+url, "PHONE_NATS_SEED="+seed, "PHONE_NATS_CA="+ca)
	if mode == "pub" {
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return cmd
}

// TestPhoneNATSHelper is the phone's NATS client; it runs only when
// phoneNATS starts it.
func TestPhoneNATSHelper(t *testing.T) {
	mode := os.Getenv("PHONE_NATS_MODE")
	if mode == "" {
		t.Skip("helper process for TestPhoneE2E")
	}
	kp, err := nkeys.FromSeed([]byte(os.Getenv("PHONE_NATS_SEED")))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	errs := make(chan error, 16)
	opts := []nats.Option{
		nats.Nkey(pub, kp.Sign), nats.RootCAs(os.Getenv("PHONE_NATS_CA")), nats.NoReconnect(),
		nats.CustomInboxPrefix("_INBOX.phones.pixel"), nats.Timeout(5 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }),
	}
	var nc *nats.Conn
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err = nats.Connect(os.Getenv("PHONE_NATS_URL"), opts...)
		if err == nil || mode == "connect" || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	switch mode {
	case "connect":
		if err := nc.Flush(); err != nil {
			t.Fatalf("flush: %v", err)
		}
	case "pub":
		// Until killed: route interest takes a moment to reach the hub.
		for {
			if err := nc.Publish("phones.pixel.gps", []byte("52.52,13.40")); err != nil {
				t.Fatal(err)
			}
			nc.Flush()
			time.Sleep(200 * time.Millisecond)
		}
	case "denied":
		nc.Publish("orders.new", []byte("x"))
		nc.Flush()
		select {
		case err := <-errs:
			if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Fatalf("unexpected error: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("publishing outside the grant was not refused")
		}
	}
}
