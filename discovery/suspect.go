package discovery

import (
	"github.com/hashicorp/memberlist"

	"github.com/meshnode/meshnode/identity"
)

// Suspects lists the members memberlist currently suspects (failed a probe,
// not yet declared dead), this node excluded. The member table has no such
// state: a suspicion is memberlist's business and usually ends in a
// refutation. mesh.Node polls it to ask WireGuard for a handshake at the
// start of a suspicion, so that by the time gossip declares the member
// dead (the suspicion timeout, at least 3 s) the data plane has answered
// whether the member's process is still running. Nil before Start and
// after Shutdown.
func (d *Discovery) Suspects() []identity.NodePublic {
	ml, err := d.memberlist()
	if err != nil {
		return nil
	}
	var names []string
	for _, n := range ml.Members() {
		if n.State == memberlist.StateSuspect {
			names = append(names, n.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []identity.NodePublic
	for _, name := range names {
		if m := d.table[name]; m != nil && !m.Self {
			out = append(out, m.Node)
		}
	}
	return out
}
