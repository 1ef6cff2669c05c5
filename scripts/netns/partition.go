package netns

import "fmt"

// partitionTable is an nftables table of the bridge family in the switch
// namespace: frames from or to a port in its set are dropped. It works on
// the switch, not inside the box, so the box's own sends still succeed and
// nothing tells it that it is cut off: a pulled cable two hops away, not a
// link down (which the box would see at once) and not an OUTPUT drop (which
// fails its sendmsg with EPERM).
const partitionTable = `table bridge meshlab_partition {
	set cut { type ifname; }
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname @cut drop
		oifname @cut drop
	}
}
`

// Partition cuts ns off the bridge: every frame it sends and every frame
// sent to it is dropped at the switch until Heal. Needs nft.
func (br *Bridge) Partition(ns *NS) error {
	return br.setCut(ns, "add")
}

// Heal undoes Partition.
func (br *Bridge) Heal(ns *NS) error {
	return br.setCut(ns, "delete")
}

func (br *Bridge) setCut(ns *NS, op string) error {
	br.mu.Lock()
	defer br.mu.Unlock()
	port, ok := br.ports[ns.Name]
	if !ok {
		return fmt.Errorf("partition: namespace %s is not on bridge %s", ns.Name, br.NS.Name)
	}
	if !br.partitioned {
		if _, err := br.NS.RunStdin(partitionTable, "nft", "-f", "-"); err != nil {
			return fmt.Errorf("partition: %w", err)
		}
		br.partitioned = true
	}
	_, err := br.NS.Run("nft", op, "element", "bridge", "meshlab_partition", "cut", fmt.Sprintf("{ %q }", port))
	return err
}
