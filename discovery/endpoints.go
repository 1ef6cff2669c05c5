package discovery

import (
	"net/netip"
	"slices"
)

// SetEndpoints changes only the underlay endpoints this node advertises
// (its mapped endpoints behind NAT, learned from hubs, then its local
// ones), keeping its routes, which another part of the node may change at
// the same time: it re-signs the meta and pushes it like SetLocal.
func (d *Discovery) SetEndpoints(endpoints []netip.AddrPort) error {
	if err := d.resign(func(m *meta) { m.endpoints = slices.Clone(endpoints) }); err != nil {
		return err
	}
	d.notify()
	d.mu.Lock()
	ml, closed := d.ml, d.closed
	d.mu.Unlock()
	if ml == nil || closed {
		return nil
	}
	if err := ml.UpdateNode(d.updateTimeout()); err != nil {
		d.log.Info("meta update still spreading", "err", err)
	}
	return nil
}
