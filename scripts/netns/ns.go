package netns

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
)

var seq atomic.Int64

// NS is one network namespace created by this process.
type NS struct {
	Name string
}

// Unique returns a short name that is unique on this host for this process:
// prefix + pid + counter. Keep prefix ≤ 4 characters so interface names
// built from it stay within IFNAMSIZ (15).
func Unique(prefix string) string {
	return fmt.Sprintf("%s%d%d", prefix, os.Getpid()%100000, seq.Add(1))
}

// Create makes a namespace with loopback up. The caller deletes it.
func Create(prefix string) (*NS, error) {
	ns := &NS{Name: Unique(prefix)}
	if _, err := Run("ip", "netns", "add", ns.Name); err != nil {
		return nil, err
	}
	if _, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		ns.Delete()
		return nil, err
	}
	return ns, nil
}

// Delete kills any process left in the namespace and removes it.
func (ns *NS) Delete() {
	if out, err := Run("ip", "netns", "pids", ns.Name); err == nil {
		for _, pid := range strings.Fields(out) {
			_, _ = Run("kill", "-9", pid)
		}
	}
	_, _ = Run("ip", "netns", "del", ns.Name)
}

// Run runs a command inside the namespace.
func (ns *NS) Run(name string, args ...string) (string, error) {
	return Run("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// RunStdin runs a command inside the namespace with stdin as its input.
func (ns *NS) RunStdin(stdin, name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := ns.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns.Name, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Command returns an unstarted command that runs inside the namespace.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// CreateVeth joins two namespaces with a veth pair and assigns the given
// CIDR addresses (e.g. "10.99.0.1/24"). It returns the interface names; the
// pair goes away with either namespace.
func CreateVeth(a *NS, addrA string, b *NS, addrB string) (string, string, error) {
	ia, ib := Unique("va"), Unique("vb")
	steps := [][]string{
		{"ip", "link", "add", ia, "type", "veth", "peer", "name", ib},
		{"ip", "link", "set", ia, "netns", a.Name},
		{"ip", "link", "set", ib, "netns", b.Name},
		{"ip", "-n", a.Name, "addr", "add", addrA, "dev", ia},
		{"ip", "-n", b.Name, "addr", "add", addrB, "dev", ib},
		{"ip", "-n", a.Name, "link", "set", ia, "up"},
		{"ip", "-n", b.Name, "link", "set", ib, "up"},
	}
	for _, s := range steps {
		if _, err := Run(s[0], s[1:]...); err != nil {
			return "", "", err
		}
	}
	return ia, ib, nil
}

// Bridge is a namespace holding a bridge that other namespaces attach to,
// like hosts on one switch.
type Bridge struct {
	NS *NS

	mu   sync.Mutex // guards ports and partitioned, and serialises Connect
	name string
	// ports is the bridge-side veth of every namespace Connect attached,
	// by namespace name: what Partition cuts.
	ports map[string]string
	// partitioned says whether the partition table exists yet.
	partitioned bool
}

// CreateBridge makes a switch namespace with one bridge in it. The caller
// deletes it with Delete.
func CreateBridge() (*Bridge, error) {
	ns, err := Create("sw")
	if err != nil {
		return nil, err
	}
	br := &Bridge{NS: ns, name: "br0", ports: map[string]string{}}
	for _, s := range [][]string{
		{"link", "add", br.name, "type", "bridge"},
		{"link", "set", br.name, "up"},
	} {
		if _, err := ns.Run("ip", s...); err != nil {
			ns.Delete()
			return nil, err
		}
	}
	return br, nil
}

// Delete removes the switch namespace (and with it every bridge port).
func (br *Bridge) Delete() { br.NS.Delete() }

// Connect attaches ns to the bridge with address cidr on an interface named
// ifname inside ns (e.g. "eth0").
func (br *Bridge) Connect(ns *NS, ifname, cidr string) error {
	br.mu.Lock()
	defer br.mu.Unlock()
	host, peer := Unique("bh"), Unique("bp")
	steps := [][]string{
		{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", host, "netns", br.NS.Name},
		{"ip", "link", "set", peer, "netns", ns.Name},
		{"ip", "-n", br.NS.Name, "link", "set", host, "master", br.name},
		{"ip", "-n", br.NS.Name, "link", "set", host, "up"},
		{"ip", "-n", ns.Name, "link", "set", peer, "name", ifname},
		{"ip", "-n", ns.Name, "addr", "add", cidr, "dev", ifname},
		{"ip", "-n", ns.Name, "link", "set", ifname, "up"},
	}
	for _, s := range steps {
		if _, err := Run(s[0], s[1:]...); err != nil {
			return err
		}
	}
	br.ports[ns.Name] = host
	return nil
}
