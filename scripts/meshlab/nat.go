package meshlab

import (
	"fmt"
	"path/filepath"

	"github.com/meshnode/meshnode/scripts/netns"
)

// AddNAT creates a home router on the lab's bridge (see netns.NAT): cone
// (endpoint-independent) or symmetric. Close deletes it.
func (l *Lab) AddNAT(symmetric bool) (*netns.NAT, error) {
	i := len(l.nats) + 1
	nat, err := netns.NewNAT(l.Bridge, fmt.Sprintf("10.231.0.%d/24", 100+i), 10+i, symmetric)
	if err != nil {
		return nil, err
	}
	l.nats = append(l.nats, nat)
	return nat, nil
}

// AddNodeBehind creates a node's namespace behind nat instead of on the
// bridge: its underlay address is private and its traffic masqueraded.
func (l *Lab) AddNodeBehind(name string, nat *netns.NAT) (*Node, error) {
	ns, err := netns.Create("mn")
	if err != nil {
		return nil, err
	}
	n := &Node{
		lab: l, Name: name, NS: ns, IP: nat.BoxIP(),
		Iface: netns.Unique("mw"), State: filepath.Join(l.Dir, name),
		Log: filepath.Join(l.Dir, name+".log"),
	}
	l.Nodes = append(l.Nodes, n)
	if err := nat.Attach(ns); err != nil {
		return nil, err
	}
	return n, nil
}

func (l *Lab) closeNATs() {
	for _, n := range l.nats {
		n.Delete()
	}
	l.nats = nil
}
