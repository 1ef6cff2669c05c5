package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/scripts/meshlab"
)

// TestOneNodeMeshGrows is issue 15 as a new user meets it: `init` + `up`
// alone serves NATS at once and takes messages into an R1 stream; a
// second box joins and NATS works across both, the stream still there; a
// third joins and the stream scales to R3 with every message. The
// bootstrap_expect is the default (3).
func TestOneNodeMeshGrows(t *testing.T) {
	lab := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	alpha, err := lab.AddNode("alpha")
	if err != nil {
		t.Fatal(err)
	}
	if err := alpha.Init("grow"); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := alpha.Up(); err != nil {
		t.Fatal(err)
	}
	if err := alpha.WaitUp(ctx); err != nil {
		t.Fatal(err)
	}
	c, cancelSend := context.WithTimeout(ctx, 30*time.Second)
	got, err := lab.SendAcross(c, alpha, alpha, "grow.hello", "hello alone")
	cancelSend()
	if err != nil || got != "hello alone" {
		t.Fatalf("NATS on a lone node: %q, %v", got, err)
	}
	t.Logf("figure: up → first NATS message on a lone node: %s", time.Since(started).Round(time.Millisecond))
	if line := natsLine(t, alpha); !strings.Contains(line, "JetStream: ok, standalone") {
		t.Fatalf("lone node status: %q", line)
	}

	// An R1 stream takes messages at once.
	if _, err := alpha.Meshnode("nats", "--state", alpha.State, "stream-add", "LONE", "lone.>", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := alpha.Meshnode("nats", "--state", alpha.State, "js-pub", "lone.m", "a", "20"); err != nil {
		t.Fatal(err)
	}
	if _, err := streamMsgs(alpha, "LONE", 20); err != nil {
		t.Fatal(err)
	}

	// beta joins: core NATS across both, and the stream is still there.
	beta, err := lab.AddNode("beta")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := alpha.Invite()
	if err != nil {
		t.Fatal(err)
	}
	if err := beta.Join(alpha, tok); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]*meshlab.Node{{alpha, beta}, {beta, alpha}} {
		c, cancelSend := context.WithTimeout(ctx, 60*time.Second)
		got, err := lab.SendAcross(c, p[0], p[1], "grow.two", "hello "+p[1].Name)
		cancelSend()
		if err != nil || got != "hello "+p[1].Name {
			t.Fatalf("NATS %s → %s: %q, %v", p[0].Name, p[1].Name, got, err)
		}
	}
	eventually(t, 60*time.Second, "the R1 stream with its 20 messages, seen from beta", func() error {
		_, err := streamMsgs(beta, "LONE", 20)
		return err
	})
	eventually(t, 60*time.Second, "more messages into the adopted stream", func() error {
		_, err := beta.Meshnode("nats", "--state", beta.State, "js-pub", "lone.m", "b", "5")
		return err
	})

	// gamma joins, and the stream scales to R3.
	gamma, err := lab.AddNode("gamma")
	if err != nil {
		t.Fatal(err)
	}
	if tok, err = alpha.Invite(); err != nil {
		t.Fatal(err)
	}
	if err := gamma.Join(alpha, tok); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitComplete(ctx); err != nil {
		t.Fatal(err)
	}
	scaled := time.Now()
	eventually(t, 60*time.Second, "update the stream to R3", func() error {
		_, err := alpha.Meshnode("nats", "--state", alpha.State, "stream-add", "LONE", "lone.>", "3")
		return err
	})
	eventually(t, 60*time.Second, "3 current replicas with 25 messages", func() error {
		return streamReplicated(gamma, "LONE", 25, 3)
	})
	t.Logf("figure: R1 → R3 update until every replica is current: %s", time.Since(scaled).Round(time.Millisecond))
	for _, n := range lab.Nodes {
		if line := natsLine(t, n); !strings.Contains(line, "JetStream: ok, meta leader") {
			t.Fatalf("%s status: %q", n.Name, line)
		}
	}

	// nats-env lists this node first, then every live member.
	out, err := beta.Meshnode("nats-env", "--state", beta.State)
	if err != nil {
		t.Fatal(err)
	}
	urls := strings.TrimPrefix(strings.SplitN(out, "\n", 2)[0], "export NATS_URL=")
	list := strings.Split(urls, ",")
	if len(list) != 3 || !strings.Contains(list[0], overlayAddr(t, beta)) {
		t.Fatalf("beta's NATS_URL = %q, want beta's URL first and 3 in all", urls)
	}
}

// natsLine is the NATS line of `meshnode status`.
func natsLine(t *testing.T, n *meshlab.Node) string {
	t.Helper()
	out, _ := n.Meshnode("status", "--state", n.State) // degraded exits 1
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "NATS ") {
			return l
		}
	}
	t.Fatalf("%s: no NATS line in status:\n%s", n.Name, out)
	return ""
}
