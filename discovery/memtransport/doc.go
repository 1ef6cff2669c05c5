// Package memtransport is an in-memory network for gossip simulations: a
// Network hands out memberlist transports (discovery.TransportFactory's
// signature: pass Network.NewTransport as discovery.Config.Transport) on
// synthetic addresses, with the knobs a simulation needs: one-way latency
// and jitter, packet loss, partitions, killed members, and per-member
// counters of packets and bytes. Streams are in-memory connections with
// the same latency, reliable and in order, like TCP.
//
// Randomness (loss, jitter) comes from one seeded generator, so a run
// with one goroutine sending is reproducible; with many, the sequence of
// draws is the seed's while which packet gets which draw depends on
// scheduling.
//
// Test-only, like memberlist's MockNetwork (which this replaces because
// discovery's admission checks a member's gossip address against its
// ticket, so members need addresses of their own): only tests and
// scripts/ import it; the meshnode binary does not link it.
package memtransport
