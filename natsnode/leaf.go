package natsnode

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/meshnode/meshnode/mesh/defaults"
)

// DefaultLeafPort is a core server's leaf-node listener port.
const DefaultLeafPort = defaults.NATSLeafPort

// JetStreamDomain is the JetStream domain of the core servers. It is part
// of the wire protocol between core and leaf servers (a leaf's clients'
// JetStream API requests travel as $JS.<JetStreamDomain>.API.…), not a
// setting: every core and leaf server of a mesh must agree on it.
const JetStreamDomain = "mesh"

// LeafConfig is the leaf-node side of the server: a core server's
// listener for leaf members, or this server as a leaf member of the core.
//
// Core and leaf. A core server runs the route cluster (routes to core
// members only) and JetStream, and listens for leaf connections. A leaf
// server (Solicit) runs no cluster and no JetStream; it connects to one
// core server at a time (one remote listing every core server given by
// SetMembers, at their LeafPort) and its clients see the whole subject
// space and use the core's JetStream through that connection, under the
// core's JetStream domain (see leafOptions).
type LeafConfig struct {
	// Host and Port are a core server's leaf-node listener (Port 0: no
	// listener, -1: a random port).
	Host string
	Port int
	// TLS is mutual TLS for the listener and for the remote of a leaf
	// server: identity.RouteTLS (the mesh CA both ways, a fixed
	// ServerName, the node certificate).
	TLS *tls.Config
	// AllowLeaf is asked for every inbound leaf connection with its
	// remote address and the certificate it presented (verified against
	// the mesh CA); true only when both name the same live member, like
	// AllowRoute. It is asked again on every Recheck. Required with a
	// listener.
	AllowLeaf func(remote netip.Addr, cert *x509.Certificate) bool

	// Solicit makes this server a leaf member: no cluster, no JetStream,
	// and the members SetMembers hands over are the core servers it
	// connects to.
	Solicit bool
	// NKeySeed is this node's user nkey seed (identity.NKeyPair's Seed):
	// the leaf connection proves the node's identity by signing the
	// core's nonce with it, as a client does.
	NKeySeed string
}

func (c *Config) leafListener() bool { return c.Leaf.Port != 0 }
func (c *Config) leafNode() bool     { return c.Leaf.Solicit }

func (c *Config) validateLeaf() error {
	l := &c.Leaf
	if l.TLS != nil {
		if err := checkRouteTLS(l.TLS); err != nil {
			return fmt.Errorf("%w (leaf-node TLS)", err)
		}
	}
	if l.Port < -1 || l.Port > 65535 {
		return fmt.Errorf("natsnode: leaf-node port %d out of range", l.Port)
	}
	if c.leafListener() {
		if l.Solicit {
			return errors.New("natsnode: a leaf server does not listen for leaf connections")
		}
		if l.AllowLeaf == nil {
			return errors.New("natsnode: AllowLeaf predicate is required with a leaf-node listener")
		}
		if !isLoopbackHost(l.Host) && l.TLS == nil {
			return fmt.Errorf("natsnode: leaf-node listener on %q beyond loopback without mutual TLS", l.Host)
		}
	}
	if l.Solicit {
		switch {
		case c.clustered():
			return errors.New("natsnode: a leaf server runs no cluster (route port set)")
		case c.JetStream.Enabled:
			return errors.New("natsnode: a leaf server runs no JetStream: its clients use the core's")
		case l.NKeySeed == "":
			return errors.New("natsnode: a leaf server needs its nkey seed to authenticate to the core")
		case l.TLS == nil:
			return errors.New("natsnode: a leaf server needs mutual TLS toward the core")
		}
	}
	return nil
}

// leafURLs is THE canonical leaf remote: the distinct leaf-node addresses
// of the core members, sorted. One remote carries them all, so the leaf
// holds one connection and fails over among them (nats-server walks a
// remote's URLs). Trap: a remote is known by its URL list (nats-server's
// RemoteLeafOpts name), so a changed list is a removed remote and an
// added one: the leaf reconnects (TestTrapLeafRemoteChangeReconnects).
// The reload compares this output, so it must stay deterministic.
func leafURLs(members []Member) []*url.URL {
	var aps []netip.AddrPort
	for _, m := range members {
		if !m.Addr.IsValid() || m.LeafPort <= 0 || m.LeafPort > 65535 {
			continue
		}
		aps = append(aps, netip.AddrPortFrom(m.Addr.Unmap(), uint16(m.LeafPort)))
	}
	slices.SortFunc(aps, func(a, b netip.AddrPort) int { return a.Compare(b) })
	aps = slices.Compact(aps)
	out := make([]*url.URL, 0, len(aps))
	for _, ap := range aps {
		out = append(out, &url.URL{Scheme: "nats-leaf", Host: ap.String()})
	}
	return out
}

// leafOptions fills o's leaf-node part: the listener of a core server, or
// the one remote of a leaf server (none while no core member is known:
// nats-server refuses a remote without URLs).
func (s *Server) leafOptions(o *server.Options, remotes []*url.URL) {
	c := &s.cfg
	if c.leafNode() {
		// The leaf maps its clients' $JS.API.>, $KV.> and $OBJ.> to
		// $JS.<JetStreamDomain>.API.… (nats-server's default_js_domain,
		// registerAccount), which the core maps back for its JetStream
		// (addLeafNodeConnection, because the core names the domain).
		// Leaf clients keep the plain API, and the plain API never
		// crosses a leaf connection: both sides see differing domains
		// ("" here, JetStreamDomain there) and deny $JS.API.>, $KV.>
		// and $OBJ.> on the connection, both ways (leafnode.go), and
		// leafSubDeny says so again. A leaf box thus receives no other
		// member's JetStream API request (TestLeafDoesNotSeeJetStreamAPI).
		// nats-server marks the option as a compatibility measure;
		// TestLeafUsesCoreJetStream fails if it stops working.
		o.JsAccDefaultDomain = map[string]string{server.DEFAULT_GLOBAL_ACCOUNT: JetStreamDomain}
	}
	if c.leafListener() {
		o.LeafNode = server.LeafNodeOpts{Host: c.Leaf.Host, Port: c.Leaf.Port, TLSConfig: c.Leaf.TLS}
		if c.Leaf.TLS != nil {
			o.LeafNode.TLSTimeout = 2
		}
	}
	if c.leafNode() && len(remotes) > 0 {
		o.LeafNode.Remotes = []*server.RemoteLeafOpts{{
			// nats-server shuffles the URLs, so the leaves spread over
			// the core.
			URLs: remotes,
			// The seed, not a SignatureCB: with a callback nats-server
			// sends no nkey in the CONNECT (only the signature), and a
			// reload compares every remote field with DeepEqual, which a
			// func never passes.
			Nkey:      c.Leaf.NKeySeed,
			TLS:       c.Leaf.TLS != nil,
			TLSConfig: c.Leaf.TLS,
		}}
	}
}

// LeafConn is one open leaf connection.
type LeafConn struct {
	ID     uint64
	Remote string // the other server's name
	Addr   string // its address
}

// leafConns lists the server's leaf connections.
func leafConns(ns *server.Server) []LeafConn {
	lz, err := ns.Leafz(nil)
	if err != nil {
		return nil
	}
	out := make([]LeafConn, 0, len(lz.Leafs))
	for _, l := range lz.Leafs {
		out = append(out, LeafConn{ID: l.ID, Remote: l.Name, Addr: fmt.Sprintf("%s:%d", l.IP, l.Port)})
	}
	return out
}
