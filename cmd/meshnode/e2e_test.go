package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/mesh/meshtest"
	"github.com/meshnode/meshnode/scripts/meshlab"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
)

// meshnodeBin is the binary the end-to-end tests run, built once by
// TestMain (meshlab.Build: the same static build the demo runs).
var meshnodeBin string

func TestMain(m *testing.M) {
	if mode := os.Getenv(faultsModeEnv); mode != "" {
		os.Exit(faultsHelper(mode)) // TestJetStreamFaults' NATS client
	}
	if os.Getenv("PHONE_NATS_MODE") != "" {
		os.Exit(m.Run()) // a phone's NATS client (TestPhoneNATSHelper) needs no binary
	}
	dir, err := os.MkdirTemp("", "meshnode-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	meshnodeBin, err = meshlab.Build(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// keepLogsEnv names a directory where newLab copies every node's whole
// log when the test ends, passed or failed (as <test>-<node>.log), for
// reading what a run did beyond the tail a failure prints.
const keepLogsEnv = "MESHNODE_TEST_LOGS"

// newLab makes a lab whose nodes and namespaces are gone when the test ends,
// and whose node logs are printed when it fails.
func newLab(t *testing.T) *meshlab.Lab {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "wg")
	netnstest.RequireTool(t, "ping")
	lab, err := meshlab.New(meshnodeBin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lab.Fast = true
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range lab.Nodes {
				t.Logf("--- %s log (tail):\n%s", n.Name, n.Tail(40))
			}
		}
		if dir := os.Getenv(keepLogsEnv); dir != "" {
			for _, n := range lab.Nodes {
				name := strings.ReplaceAll(t.Name(), "/", "_") + "-" + n.Name + ".log"
				if b, err := os.ReadFile(n.Log); err != nil {
					t.Logf("%s: %v", keepLogsEnv, err)
				} else if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
					t.Logf("%s: %v", keepLogsEnv, err)
				}
			}
		}
		lab.Close()
	})
	return lab
}

// eventually polls check with a deadline, every 200 ms: each check runs
// meshnode or a tool in a namespace.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	meshtest.EventuallyEvery(t, 200*time.Millisecond, timeout, what, check)
}

// TestThreeNodeMesh is the story of a mesh: alpha creates it, beta and gamma
// join with tokens, and everything a user relies on works across it; then
// beta crashes and comes back.
func TestThreeNodeMesh(t *testing.T) {
	lab := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// alpha creates the mesh and runs it.
	for _, name := range []string{"alpha", "beta", "gamma"} {
		if _, err := lab.AddNode(name); err != nil {
			t.Fatal(err)
		}
	}
	alpha, beta, gamma := lab.Nodes[0], lab.Nodes[1], lab.Nodes[2]
	if err := alpha.Init("e2e"); err != nil {
		t.Fatal(err)
	}
	if err := alpha.Up(); err != nil {
		t.Fatal(err)
	}
	if err := alpha.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	alphaAddr := overlayAddr(t, alpha)

	// beta joins with a token from alpha and can reach alpha over the
	// overlay as soon as it is admitted.
	tokBeta, err := alpha.Invite()
	if err != nil {
		t.Fatal(err)
	}
	joined := time.Now()
	if err := beta.Join(alpha, tokBeta); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "beta pings alpha over the overlay", func() error {
		_, err := beta.NS.Run("ping", "-6", "-c1", "-W1", alphaAddr)
		return err
	})
	t.Logf("figure: join → first overlay ping: %s", time.Since(joined).Round(time.Millisecond))

	// gamma joins too; then every node sees 3 alive members, WireGuard
	// handshakes and a full NATS route mesh.
	tokGamma, err := alpha.Invite("--role", "hub")
	if err != nil {
		t.Fatal(err)
	}
	lastStart := time.Now()
	if err := gamma.Join(alpha, tokGamma); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: last start → full WireGuard + NATS route mesh: %s", time.Since(lastStart).Round(time.Millisecond))

	// Every node's metrics parse with the Prometheus parser and say the
	// same: 3 members alive, 2 direct peers, the full route set.
	scraped := time.Now()
	m0 := scrape(t, alpha)
	t.Logf("figure: metrics scrape of alpha on a 3-node mesh: %s, %d families", time.Since(scraped).Round(time.Millisecond), len(m0))
	for _, n := range lab.Nodes {
		e := scrape(t, n)
		wantMetric(t, n, e, "meshnode_members", map[string]string{"state": "alive"}, 3)
		wantMetric(t, n, e, "meshnode_peers", map[string]string{"path": "direct"}, 2)
		wantMetric(t, n, e, "meshnode_nats_routes_up", nil, 2)
		wantMetric(t, n, e, "meshnode_nats_routes_expected", nil, 2)
	}

	// wg show (real wireguard-tools) lists 2 peers with recent handshakes.
	for _, n := range lab.Nodes {
		out, err := n.NS.Run("wg", "show", n.Iface, "latest-handshakes")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Fatalf("%s: wg show lists %d peers, want 2:\n%s", n.Name, len(lines), out)
		}
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) != 2 || f[1] == "0" {
				t.Fatalf("%s: peer without a handshake: %q", n.Name, l)
			}
		}
	}

	// Overlay ping6 between every pair.
	for _, from := range lab.Nodes {
		for _, to := range lab.Nodes {
			if from == to {
				continue
			}
			addr := overlayAddr(t, to)
			if out, err := from.NS.Run("ping", "-6", "-c1", "-W3", addr); err != nil {
				t.Fatalf("ping %s → %s (%s): %v\n%s", from.Name, to.Name, addr, err, out)
			}
		}
	}

	// A message published on alpha reaches a subscriber on gamma, through
	// nats clients authenticated with each node's nkey over TLS.
	got, err := lab.SendAcross(ctx, alpha, gamma, "e2e.hello", "hello gamma")
	if err != nil {
		t.Fatal(err)
	}
	if got != "hello gamma" {
		t.Fatalf("gamma received %q, want %q", got, "hello gamma")
	}

	// A JetStream R3 stream accepts and replicates messages.
	eventually(t, 60*time.Second, "create R3 stream", func() error {
		_, err := alpha.Meshnode("nats", "--state", alpha.State, "stream-add", "ORDERS", "orders.>", "3")
		return err
	})
	if _, err := alpha.Meshnode("nats", "--state", alpha.State, "js-pub", "orders.new", "o", "20"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "3 current replicas with 20 messages", func() error {
		return streamReplicated(gamma, "ORDERS", 20, 3)
	})

	// The traffic shows in alpha's metrics: WireGuard bytes and NATS
	// messages grew, and it holds a replica of the stream.
	m1 := scrape(t, alpha)
	for _, fam := range []string{"meshnode_wireguard_rx_bytes_total", "meshnode_wireguard_tx_bytes_total", "meshnode_nats_in_msgs_total", "meshnode_nats_out_msgs_total"} {
		if before, after := m0.MustValue(t, fam, nil), m1.MustValue(t, fam, nil); after <= before {
			t.Fatalf("alpha: %s did not grow with traffic: %v → %v", fam, before, after)
		}
	}
	wantMetric(t, alpha, m1, "meshnode_jetstream_streams", nil, 1)
	wantMetric(t, alpha, m1, "meshnode_jetstream_meta_leader_present", nil, 1)
	wantMetric(t, alpha, m1, "meshnode_enroll_joins_admitted_total", nil, 2)

	// A healthy node's status exits 0.
	if code := statusExit(alpha); code != 0 {
		t.Fatalf("status on a healthy mesh exited %d, want 0", code)
	}

	// beta crashes: alpha and gamma mark it dead, and status says degraded.
	beta.Kill()
	for _, n := range []*meshlab.Node{alpha, gamma} {
		eventually(t, 30*time.Second, n.Name+" marks beta dead", func() error {
			return memberState(n, "beta", api.StateDead)
		})
	}
	if code := statusExit(alpha); code != 1 {
		t.Fatalf("status with a dead member exited %d, want 1 (degraded)", code)
	}
	mDead := scrape(t, alpha)
	wantMetric(t, alpha, mDead, "meshnode_members", map[string]string{"state": "alive"}, 2)
	wantMetric(t, alpha, mDead, "meshnode_members", map[string]string{"state": "dead"}, 1)
	// Messages published while beta is down: the stream may first need a
	// new leader, so the publisher retries (js-pub is idempotent).
	eventually(t, 60*time.Second, "publish 10 messages while beta is down", func() error {
		_, err := alpha.Meshnode("nats", "--state", alpha.State, "js-pub", "orders.new", "p", "10")
		return err
	})

	// beta comes back with up: it rejoins and its replica catches up.
	if err := beta.Up(); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "beta's replica catches up to 30 messages", func() error {
		return streamReplicated(beta, "ORDERS", 30, 3)
	})

	// A reused token and an expired token are refused with clear messages
	// and leave nothing behind on the would-be member.
	delta, err := lab.AddNode("delta")
	if err != nil {
		t.Fatal(err)
	}
	tokExpired, err := alpha.Invite("--ttl", "1ms")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ token, want string }{
		{tokBeta, "already used"},
		{tokExpired, "expired"},
	} {
		if err := delta.Join(alpha, c.token); err != nil {
			t.Fatal(err)
		}
		err := delta.Wait(30 * time.Second)
		if err == nil {
			t.Fatalf("join with a token that is %s succeeded", c.want)
		}
		if log := delta.Tail(5); !strings.Contains(log, c.want) {
			t.Fatalf("join with a token that is %s: error does not say so:\n%s", c.want, log)
		}
		if _, err := os.Stat(filepath.Join(delta.State, "ticket.bin")); !os.IsNotExist(err) {
			t.Fatalf("refused join left a ticket behind: %v", err)
		}
		if _, err := delta.NS.Run("ip", "link", "show", delta.Iface); err == nil {
			t.Fatalf("refused join left interface %s behind", delta.Iface)
		}
	}
	if err := memberAbsent(alpha, "delta"); err != nil {
		t.Fatal(err)
	}
	// alpha counted both refusals by reason, and no admission.
	mRefused := scrape(t, alpha)
	wantMetric(t, alpha, mRefused, "meshnode_enroll_joins_refused_total", map[string]string{"reason": "token-used"}, 1)
	wantMetric(t, alpha, mRefused, "meshnode_enroll_joins_refused_total", map[string]string{"reason": "token-expired"}, 1)
	wantMetric(t, alpha, mRefused, "meshnode_enroll_joins_admitted_total", nil, 2)

	// gamma leaves gracefully: its daemon exits cleanly and removes its
	// interface and sockets; the others see it as left, not dead.
	if _, err := gamma.Meshnode("leave", "--state", gamma.State); err != nil {
		t.Fatal(err)
	}
	if err := gamma.Wait(30 * time.Second); err != nil {
		t.Fatalf("gamma after leave: %v", err)
	}
	if _, err := gamma.NS.Run("ip", "link", "show", gamma.Iface); err == nil {
		t.Fatalf("interface %s still exists after leave", gamma.Iface)
	}
	if _, err := os.Stat("/var/run/wireguard/" + gamma.Iface + ".sock"); !os.IsNotExist(err) {
		t.Fatalf("UAPI socket of %s still exists after leave: %v", gamma.Iface, err)
	}
	if code := statusExit(gamma); code != 2 {
		t.Fatalf("status of a stopped node exited %d, want 2 (not running)", code)
	}
	eventually(t, 30*time.Second, "alpha sees gamma left", func() error {
		return memberState(alpha, "gamma", api.StateLeft)
	})
}

// statusExit runs meshnode status on n and returns its exit code.
func statusExit(n *meshlab.Node) int {
	_, err := n.Meshnode("status", "--state", n.State)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func overlayAddr(t *testing.T, n *meshlab.Node) string {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st.Addr.String()
}

func memberAbsent(n *meshlab.Node, name string) error {
	st, err := n.Status()
	if err != nil {
		return err
	}
	for _, m := range st.Members {
		if m.Name == name {
			return fmt.Errorf("%s lists %s (%s) after a refused join", n.Name, name, m.State)
		}
	}
	return nil
}

// streamInfo is what the tests read of `meshnode nats stream-info`.
type streamInfo struct {
	State struct {
		Msgs uint64 `json:"messages"`
	} `json:"state"`
	Cluster struct {
		Leader   string `json:"leader"`
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Offline bool   `json:"offline"`
			Lag     uint64 `json:"lag"`
		} `json:"replicas"`
	} `json:"cluster"`
}

// askStream asks n for stream's info.
func askStream(n *meshlab.Node, stream string) (*streamInfo, error) {
	out, err := n.Meshnode("nats", "--state", n.State, "--timeout", "5s", "stream-info", stream)
	if err != nil {
		return nil, err
	}
	var info streamInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return nil, fmt.Errorf("stream info: %w: %s", err, out)
	}
	return &info, nil
}

// servers are the stream's leader and replicas.
func (i *streamInfo) servers() []string {
	out := []string{i.Cluster.Leader}
	for _, r := range i.Cluster.Replicas {
		out = append(out, r.Name)
	}
	return out
}

// current says why stream is not led with replicas-1 current replicas
// without lag.
func (i *streamInfo) current(stream string, replicas int) error {
	if i.Cluster.Leader == "" || len(i.Cluster.Replicas) != replicas-1 {
		return fmt.Errorf("stream %s: leader %q with %d replicas, want %d", stream, i.Cluster.Leader, len(i.Cluster.Replicas), replicas-1)
	}
	for _, r := range i.Cluster.Replicas {
		if !r.Current || r.Offline || r.Lag != 0 {
			return fmt.Errorf("stream %s: replica %s current=%v offline=%v lag=%d", stream, r.Name, r.Current, r.Offline, r.Lag)
		}
	}
	return nil
}

// streamMsgs reads stream's info on n and checks it holds msgs messages.
func streamMsgs(n *meshlab.Node, stream string, msgs uint64) (*streamInfo, error) {
	info, err := askStream(n, stream)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs != msgs {
		return nil, fmt.Errorf("%s holds %d messages, want %d", stream, info.State.Msgs, msgs)
	}
	return info, nil
}

// streamReplicated checks, on n, that stream holds msgs messages on a
// leader and replicas-1 current replicas.
func streamReplicated(n *meshlab.Node, stream string, msgs uint64, replicas int) error {
	info, err := streamMsgs(n, stream, msgs)
	if err != nil {
		return err
	}
	return info.current(stream, replicas)
}

func memberState(n *meshlab.Node, name string, want api.State) error {
	st, err := n.Status()
	if err != nil {
		return err
	}
	for _, m := range st.Members {
		if m.Name == name {
			if m.State != want {
				return fmt.Errorf("%s sees %s %s, want %s", n.Name, name, m.State, want)
			}
			return nil
		}
	}
	return fmt.Errorf("%s does not list %s", n.Name, name)
}
