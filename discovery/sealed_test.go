package discovery

import (
	"bytes"
	"math"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
)

// gossipKey is the key every member of tm derives (one route secret).
func (tm *testMesh) gossipKey() []byte {
	k := tm.enroll("keyholder", 0).GossipKey()
	return k[:]
}

// unsealedDead is a memberlist "dead" message as a process without the
// gossip key can write it: label header, message type, msgpack body.
func unsealedDead(t *testing.T, label, node string) []byte {
	t.Helper()
	var body bytes.Buffer
	body.WriteByte(5) // memberlist's deadMsg
	msg := struct {
		Incarnation uint32
		Node        string
		From        string
	}{math.MaxUint32, node, node}
	if err := codec.NewEncoder(&body, &codec.MsgpackHandle{}).Encode(msg); err != nil {
		t.Fatal(err)
	}
	pkt, err := memberlist.AddLabelHeaderToPacket(body.Bytes(), label)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

// TestUnsealedGossipIgnored: a process that reaches the gossip port but
// has no gossip key can neither declare a healthy member dead (the forged
// dead(inc=MaxUint32) that used to keep members "not alive") nor join.
func TestUnsealedGossipIgnored(t *testing.T) {
	tm := newTestMesh(t)
	nodes, _ := startMesh(t, tm, 2)
	target := nodes[0].gossipAddrPort(t)
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	forged := unsealedDead(t, tm.ca.Trust.Mesh, nodes[1].name())
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := conn.Write(forged); err != nil {
			t.Fatal(err)
		}
		if st, _ := stateOf(nodes[0].d, nodes[1].name()); st != StateAlive {
			t.Fatalf("a forged unsealed dead message made %s %s on %s", nodes[1].name(), st, nodes[0].name())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A memberlist speaking without the key (or with another key) cannot
	// join, and is never listed.
	for i, key := range [][]byte{nil, bytes.Repeat([]byte{7}, 32)} {
		r := &rogue{name: "keyless", addr: assignAddr([32]byte{9, byte(i)}), key: key}
		ml := r.start(t)
		if _, err := ml.Join([]string{target.String()}); err == nil {
			t.Errorf("join without the mesh's gossip key (key %x) succeeded", key)
		}
	}
	for _, m := range nodes[0].d.Members() {
		if m.Name == "keyless" {
			t.Fatalf("%s lists the keyless rogue", nodes[0].name())
		}
	}
}
