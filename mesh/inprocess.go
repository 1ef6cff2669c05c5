package mesh

import (
	"errors"

	"github.com/nats-io/nats.go"
)

// ConnectNATS connects a service embedded with the node (the appliance's
// update agent) to the node's NATS server in process: no socket, and the
// node's own rights, which include creating consumers (member clients may
// not). Call it once Ready is closed; until NATS runs it returns an error.
func (n *Node) ConnectNATS(opts ...nats.Option) (*nats.Conn, error) {
	select {
	case <-n.ready:
	default:
		return nil, errors.New("mesh: the node is not ready: NATS is not running yet")
	}
	return n.nats.ConnectInProcess(opts...)
}
