package wg

import (
	"bytes"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// This file breaks crossed handshakes.
//
// When two peers start within a round trip of each other (a site that lost
// power coming back, a mesh launched at once), each sends an initiation,
// each consumes the other's before the answer to its own arrives, and each
// then drops the response it gets: answering an initiation replaces the
// handshake state the answer to its own initiation would have matched
// (wireguard-go's CreateMessageResponse deletes that initiation's index).
// Both ends have just sent a handshake message, so neither sends another
// for REKEY_TIMEOUT (5 s), and when both retry at 5 s plus 0-333 ms of
// jitter they can cross again. Seen: five nodes restarted at once left
// pairs without a session, and JetStream without a quorum, for 5 s; a
// 16.5 s pause on a loaded CI machine fits three crossings in a row.
//
// The signature is visible from outside: the peer sent a handshake message
// that this device consumed (RxBytes counts those) and yet no session ever
// completed (LastHandshake is zero). When it lasts longer than a round trip
// (crossedFor), the end with the lower public key forgets its half-done
// handshake and initiates at once (ExpireCurrentKeypairs lifts the 5 s
// rule; there is no session to lose), at most every 5 s and three times,
// and the other end answers: a peer may consume an initiation at any
// time. Only one end acts, so the two
// fresh attempts cannot cross again, and a peer that does not act (an
// older meshnode, a phone) leaves the other end's retries as they were.
const (
	// crossedFor is how long the signature must last: a handshake in
	// flight completes within one round trip.
	crossedFor = 500 * time.Millisecond
	// uncrossEvery bounds the fresh initiations to one peer, like
	// wireguard-go's own retries.
	uncrossEvery = device.RekeyTimeout
	// uncrossTries bounds them per spell of the signature: one breaks a
	// crossing; a peer that went away after its initiation (a phone whose
	// app stopped, a box that died) shows the signature for good and is
	// left to wireguard-go's own retries.
	uncrossTries = 3
)

// crossing remembers, per peer, when the signature was first seen, when
// this end last initiated to break it and how often it did.
type crossing struct {
	mu     sync.Mutex
	since  map[wgtypes.Key]time.Time
	kicked map[wgtypes.Key]time.Time
	tries  map[wgtypes.Key]int
}

// looksCrossed is the signature: heard from, but no session ever.
func looksCrossed(p PeerStats) bool { return p.RxBytes > 0 && p.LastHandshake.IsZero() }

// due returns the peers this end (public key self) initiates to now, and
// forgets the peers that are gone or no longer show the signature.
func (c *crossing) due(self wgtypes.Key, peers []PeerStats, now time.Time) []wgtypes.Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.since == nil {
		c.since, c.kicked, c.tries = map[wgtypes.Key]time.Time{}, map[wgtypes.Key]time.Time{}, map[wgtypes.Key]int{}
	}
	shows := make(map[wgtypes.Key]bool, len(peers))
	var out []wgtypes.Key
	for _, p := range peers {
		k := p.PublicKey
		if !looksCrossed(p) || bytes.Compare(self[:], k[:]) >= 0 {
			continue
		}
		shows[k] = true
		first, ok := c.since[k]
		if !ok {
			c.since[k] = now
			continue
		}
		if now.Sub(first) < crossedFor {
			continue
		}
		if last, ok := c.kicked[k]; ok && now.Sub(last) < uncrossEvery || c.tries[k] >= uncrossTries {
			continue
		}
		c.kicked[k] = now
		c.tries[k]++
		out = append(out, k)
	}
	for k := range c.since {
		if !shows[k] {
			delete(c.since, k)
			delete(c.kicked, k)
			delete(c.tries, k)
		}
	}
	return out
}

// Uncross breaks crossed handshakes among peers (a Peers answer read just
// before) and returns the peers it initiated to. mesh.Node calls it on
// every path tick.
func (d *Device) Uncross(peers []PeerStats, now time.Time) []wgtypes.Key {
	keys := d.cross.due(d.pub, peers, now)
	for _, k := range keys {
		peer := d.dev.LookupPeer(device.NoisePublicKey(k))
		if peer == nil {
			continue
		}
		peer.ExpireCurrentKeypairs()
		if err := peer.SendHandshakeInitiation(false); err != nil {
			d.log.Debug("crossed handshake: initiation not sent", "peer", k.String(), "err", err)
		}
	}
	return keys
}
