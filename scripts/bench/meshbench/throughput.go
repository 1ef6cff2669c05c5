package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/scripts/netns"
)

// The throughput phases. wg-throughput runs scripts/bench/wg-throughput
// (veth, bare wireguard-go and meshnode's mesh/wg device, outside any
// mesh); lab-throughput measures iperf3 inside the running 3-node mesh:
// the bridge underlay, a bare wireguard-go pair and the meshnode overlay.

var wgRunLine = regexp.MustCompile(`run \d+: veth ([0-9.]+)\s+bare-wg ([0-9.]+)\s+meshnode ([0-9.]+)`)

// wgThroughput runs scripts/bench/wg-throughput (veth, bare wireguard-go,
// meshnode's mesh/wg device, interleaved) and takes its per-run figures.
func wgThroughput(ctx context.Context, s *settings, r *Report) error {
	if s.wgThroughput == "" {
		return fmt.Errorf("no --wg-throughput script")
	}
	cmd := exec.CommandContext(ctx, s.wgThroughput)
	// On Ctrl-C, SIGTERM (not the default SIGKILL) so the script's EXIT
	// trap stops its daemons and deletes its namespaces; a killed script
	// orphans them, and they hold its stderr open, so this would never end.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Env = append(os.Environ(), fmt.Sprintf("RUNS=%d", s.runs), fmt.Sprintf("DURATION=%d", s.duration))
	cmd.Stdout = os.Stderr
	pr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var a, b, c []float64
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(os.Stderr, "  wg-throughput: "+line)
		if m := wgRunLine.FindStringSubmatch(line); m != nil {
			a = append(a, atof(m[1]))
			b = append(b, atof(m[2]))
			c = append(c, atof(m[3]))
		}
	}
	if err := cmd.Wait(); err != nil {
		return err
	}
	const g = "throughput"
	fa := r.add(fig(g, "wg-throughput: veth (direct pair)", "Gbit/s", a))
	fb := r.add(fig(g, "wg-throughput: bare wireguard-go", "Gbit/s", b))
	fc := r.add(fig(g, "wg-throughput: meshnode mesh/wg device", "Gbit/s", c))
	r.add(ratio(g, "wg-throughput: mesh/wg / bare wireguard-go", fc, fb)).goalAtLeast(1.0, "≥ 1.0")
	r.add(ratio(g, "wg-throughput: mesh/wg / veth", fc, fa))
	return nil
}

func atof(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }

func iperf(ctx context.Context, l *benchLab, from int, dst string, secs int) (float64, error) {
	cmd := l.Nodes[from].NS.Command("iperf3", "-c", dst, "-t", strconv.Itoa(secs), "-J")
	out, err := cmd.Output()
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil || res.Error != "" || err != nil {
		return 0, fmt.Errorf("iperf3 to %s: %v %v %s", dst, err, jerr, res.Error)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

// offloads reads ethtool -k of iface in node i's namespace and keeps the
// offload features that matter for a TUN/veth data path.
func offloads(l *benchLab, i int, iface string) string {
	out, err := l.Nodes[i].NS.Run("ethtool", "-k", iface)
	if err != nil {
		return "ethtool failed: " + strings.TrimSpace(out)
	}
	want := []string{"tx-checksumming", "scatter-gather", "tcp-segmentation-offload", "tx-tcp6-segmentation", "tx-udp-segmentation", "generic-segmentation-offload", "generic-receive-offload", "rx-gro-list", "rx-udp-gro-forwarding"}
	var parts []string
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		for _, w := range want {
			if k == w {
				parts = append(parts, k+"="+strings.Fields(v)[0])
			}
		}
	}
	return strings.Join(parts, " ")
}

// wgPair is a bare WireGuard pair between node1 and node2 of the lab,
// outside meshnode, configured with wg and ip like any wg user would.
type wgPair struct {
	ifaces [2]string
	pids   [2]int
	dst    string // node2's address on the pair
}

// startWGPair starts cmd IFACE (wgbare) in node1's and node2's
// namespaces and configures them as peers on port with addresses in
// net::1 and net::2.
func startWGPair(ctx context.Context, l *benchLab, keyDir string, pubs [2]string, cmd []string, port, net string) (*wgPair, error) {
	p := &wgPair{ifaces: [2]string{netns.Unique("wb"), netns.Unique("wb")}, dst: net + "2"}
	peersIP := []string{l.Nodes[1].IP, l.Nodes[0].IP}
	for i := range 2 {
		args := append(append([]string{}, cmd[1:]...), p.ifaces[i])
		c, _, err := l.Nodes[i].Spawn(cmd[0], args...)
		if err != nil {
			return nil, err
		}
		p.pids[i] = c.Process.Pid
	}
	for i := range 2 {
		iface := p.ifaces[i]
		if err := waitFor(ctx, 10*time.Second, cmd[0]+" "+iface, func() bool {
			return exec.Command("wg", "show", iface).Run() == nil
		}); err != nil {
			return nil, err
		}
		ns := l.Nodes[i].NS
		steps := [][]string{
			{"wg", "set", iface, "private-key", filepath.Join(keyDir, fmt.Sprintf("%d.key", i)), "listen-port", port,
				"peer", pubs[1-i], "endpoint", peersIP[i] + ":" + port, "allowed-ips", fmt.Sprintf("%s%d/128", net, 2-i)},
			{"ip", "addr", "add", fmt.Sprintf("%s%d/48", net, i+1), "dev", iface, "nodad"},
			{"ip", "link", "set", iface, "up"},
		}
		for _, st := range steps {
			if out, err := ns.Run(st[0], st[1:]...); err != nil {
				return nil, fmt.Errorf("%v: %w: %s", st, err, out)
			}
		}
	}
	if err := waitFor(ctx, 20*time.Second, "ping "+p.dst, func() bool {
		return l.Nodes[0].NS.Command("ping", "-6", "-c1", "-W1", p.dst).Run() == nil
	}); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *wgPair) removeSockets() {
	for _, i := range p.ifaces {
		os.Remove("/var/run/wireguard/" + i + ".sock")
	}
}

// labThroughput measures, between node1 and node2 of the running mesh and
// interleaved run by run: the bridge underlay, a bare wireguard-go pair
// (wgbare, configured with wg, on another port) and the full meshnode
// overlay (the daemons' own interfaces).
func labThroughput(ctx context.Context, s *settings, r *Report, l *benchLab) error {
	if s.wgbare == "" {
		return fmt.Errorf("no --wgbare binary")
	}
	a, b := l.Nodes[0], l.Nodes[1]
	keyDir, err := os.MkdirTemp(l.dir, "keys-")
	if err != nil {
		return err
	}
	var pubs [2]string
	for i := range 2 {
		k, err := exec.Command("wg", "genkey").Output()
		if err != nil {
			return fmt.Errorf("wg genkey: %w", err)
		}
		kf := filepath.Join(keyDir, fmt.Sprintf("%d.key", i))
		if err := os.WriteFile(kf, k, 0o600); err != nil {
			return err
		}
		pc := exec.Command("wg", "pubkey")
		pc.Stdin = bytes.NewReader(k)
		p, err := pc.Output()
		if err != nil {
			return err
		}
		pubs[i] = strings.TrimSpace(string(p))
	}
	bare, err := startWGPair(ctx, l, keyDir, pubs, []string{s.wgbare}, "51830", "fd77:6b:3::")
	if bare != nil {
		defer bare.removeSockets()
	}
	if err != nil {
		return err
	}
	bareA := bare.ifaces[0]
	if _, _, err := l.Nodes[1].Spawn("iperf3", "-s"); err != nil {
		return err
	}
	bareDst, overlayDst, underDst := bare.dst, l.Nodes[1].Addr, b.IP
	for _, d := range []string{overlayDst} {
		if err := waitFor(ctx, 20*time.Second, "ping "+d, func() bool {
			return a.NS.Command("ping", "-6", "-c1", "-W1", d).Run() == nil
		}); err != nil {
			return err
		}
	}
	if err := waitFor(ctx, 10*time.Second, "iperf3 server", func() bool {
		out, _ := b.NS.Run("ss", "-ltn")
		return strings.Contains(out, ":5201 ")
	}); err != nil {
		return err
	}
	r.Checks["offloads: meshnode TUN (node1 "+a.Iface+")"] = offloads(l, 0, a.Iface)
	r.Checks["offloads: bare wireguard-go TUN (node1)"] = offloads(l, 0, bareA)
	r.Checks["offloads: underlay veth (node1 eth0)"] = offloads(l, 0, "eth0")
	r.Checks["mtu: meshnode / bare wireguard-go"] = strings.TrimSpace(sh("sh", "-c", fmt.Sprintf("ip netns exec %s cat /sys/class/net/%s/mtu /sys/class/net/%s/mtu | paste -sd/", a.NS.Name, a.Iface, bareA)))

	var u, bw, ov []float64
	for i := 0; i < s.runs; i++ {
		v, err := iperf(ctx, l, 0, underDst, s.duration)
		if err != nil {
			return err
		}
		u = append(u, v)
		order := []string{bareDst, overlayDst}
		if i%2 == 1 {
			order = []string{overlayDst, bareDst}
		}
		for _, d := range order {
			v, err := iperf(ctx, l, 0, d, s.duration)
			if err != nil {
				return err
			}
			if d == bareDst {
				bw = append(bw, v)
			} else {
				ov = append(ov, v)
			}
		}
		logf("  lab run %d: underlay %.3f  bare-wg %.3f  meshnode overlay %.3f Gbit/s", i+1, u[i], bw[i], ov[i])
	}
	const g = "throughput"
	fu := r.add(fig(g, "lab: underlay (bridge)", "Gbit/s", u))
	fb := r.add(fig(g, "lab: bare wireguard-go", "Gbit/s", bw))
	fo := r.add(fig(g, "lab: meshnode overlay (full node)", "Gbit/s", ov))
	r.add(ratio(g, "lab: meshnode overlay / bare wireguard-go", fo, fb)).goalAtLeast(1.0, "≥ 1.0")
	r.add(ratio(g, "lab: meshnode overlay / underlay", fo, fu))
	if s.tune {
		return tuneThroughput(ctx, s, r, l, bareDst)
	}
	return nil
}
