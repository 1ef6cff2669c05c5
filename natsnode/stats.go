package natsnode

import "github.com/nats-io/nats-server/v2/server"

// Stats are the server's traffic counters and JetStream usage, read from
// nats-server's own monitoring structures (Varz, Jsz) in process: nothing
// listens on a monitoring port.
type Stats struct {
	Running       bool
	Connections   int // client connections now
	InMsgs        uint64
	OutMsgs       uint64
	InBytes       uint64
	OutBytes      uint64
	SlowConsumers uint64

	JetStream   bool
	MetaLeader  bool // the meta group has a leader
	Streams     int
	Consumers   int
	MemoryBytes uint64
	StoreBytes  uint64
	MemoryLimit int64
	StoreLimit  int64
}

// Stats snapshots the counters. It costs one Varz and, with JetStream, one
// Jsz: meant for a metrics scrape, not a hot path.
func (s *Server) Stats() Stats {
	ns := s.srv()
	if ns == nil {
		return Stats{}
	}
	st := Stats{Running: ns.Running()}
	if vz, err := ns.Varz(nil); err == nil {
		st.Connections = vz.Connections
		st.InMsgs, st.OutMsgs = nonNeg(vz.InMsgs), nonNeg(vz.OutMsgs)
		st.InBytes, st.OutBytes = nonNeg(vz.InBytes), nonNeg(vz.OutBytes)
		st.SlowConsumers = nonNeg(vz.SlowConsumers)
	}
	if !ns.JetStreamEnabled() {
		return st
	}
	st.JetStream = true
	if jsz, err := ns.Jsz(&server.JSzOptions{}); err == nil {
		st.Streams, st.Consumers = jsz.Streams, jsz.Consumers
		st.MemoryBytes, st.StoreBytes = jsz.Memory, jsz.Store
		st.MemoryLimit, st.StoreLimit = jsz.Config.MaxMemory, jsz.Config.MaxStore
		st.MetaLeader = jsz.Meta != nil && jsz.Meta.Leader != ""
	}
	return st
}

func nonNeg(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}
