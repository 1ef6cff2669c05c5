package discovery

import (
	"bytes"
	"net"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// Rejection reasons, the keys of Rejections.
const (
	RejectMalformed        = "malformed-meta"
	RejectForeignCA        = "foreign-ca"
	RejectBadCASignature   = "bad-ca-signature"
	RejectExpired          = "expired"
	RejectNotYetValid      = "not-yet-valid"
	RejectTicketAddress    = "ticket-address"
	RejectRevoked          = "revoked"
	RejectBadMetaSignature = "bad-meta-signature"
	RejectNameMismatch     = "name-mismatch"
	RejectAddressMismatch  = "address-mismatch"
	RejectInternalEndpoint = "internal-endpoint"
	// RejectStaleMeta refuses an older meta than one already seen; it is
	// not counted (see admit).
	RejectStaleMeta = "stale-meta"
)

// admitError is why a node was not admitted.
type admitError struct {
	reason string
	detail string
}

func (e *admitError) Error() string { return e.reason + ": " + e.detail }

func reject(reason, detail string) *admitError { return &admitError{reason, detail} }

// maxVerifyCache bounds the cache of metas whose signatures checked out.
const maxVerifyCache = 4096

// checkSignatures parses a meta and checks both signatures (CA over the
// ticket, node over the meta), caching successes: alive messages repeat
// the same meta many times.
func (d *Discovery) checkSignatures(b []byte) (*meta, *admitError) {
	d.cacheMu.Lock()
	md, ok := d.verified[string(b)]
	d.cacheMu.Unlock()
	if ok {
		return md, nil
	}
	md, err := parseMeta(b)
	if err != nil {
		return nil, reject(RejectMalformed, err.Error())
	}
	t := md.ticket
	if t.CAKeyID != d.trust.Public.KeyID() {
		return nil, reject(RejectForeignCA, "ticket of "+t.Name+" was issued by another CA")
	}
	// Verify checks the validity window too; time is checked separately
	// (and every time) in admit, so verify at the ticket's own start.
	if err := t.Verify(d.trust, t.NotBefore); err != nil {
		if identity.OverlayAddr(d.trust.Prefix(), t.Node) != t.Addr {
			return nil, reject(RejectTicketAddress, err.Error())
		}
		return nil, reject(RejectBadCASignature, err.Error())
	}
	if !md.verify() {
		return nil, reject(RejectBadMetaSignature, "meta of "+t.Name+" is not signed by its identity key")
	}
	d.cacheMu.Lock()
	if len(d.verified) >= maxVerifyCache {
		clear(d.verified)
	}
	d.verified[string(bytes.Clone(b))] = md
	d.cacheMu.Unlock()
	return md, nil
}

// admit decides whether a node gossip tells us about may be a member. It
// runs inside memberlist's delegates with memberlist's locks held: it only
// takes d's own locks and never calls back into memberlist.
func (d *Discovery) admit(name string, addr net.IP, b []byte, now time.Time) (*meta, *admitError) {
	md, rej := d.checkSignatures(b)
	if rej != nil {
		return nil, rej
	}
	t := md.ticket
	if now.Add(identity.ClockSkew).Before(t.NotBefore) {
		return nil, reject(RejectNotYetValid, "ticket of "+t.Name+" is not valid before "+t.NotBefore.Format(time.RFC3339))
	}
	if now.Add(-identity.ClockSkew).After(t.NotAfter) {
		return nil, reject(RejectExpired, "ticket of "+t.Name+" expired at "+t.NotAfter.Format(time.RFC3339))
	}
	if d.revs.IsRevoked(t.Node) {
		return nil, reject(RejectRevoked, t.Name+" ("+t.Node.ShortString()+") is revoked")
	}
	if !d.cfg.LabEndpoints {
		if err := CheckDialable(md.endpoints, d.trust.Prefix()); err != nil {
			return nil, reject(RejectInternalEndpoint, t.Name+": "+err.Error()+" (this node is not configured for a lab: lab_endpoints)")
		}
	}
	if name != t.Name {
		return nil, reject(RejectNameMismatch, "gossip name "+name+" but ticket name "+t.Name)
	}
	a, ok := netip.AddrFromSlice(addr)
	if want := d.cfg.GossipAddr(t); !ok || a.Unmap() != want.Unmap() {
		return nil, reject(RejectAddressMismatch, "gossip address of "+t.Name+" is "+addr.String()+", its ticket says "+want.String())
	}
	d.mu.Lock()
	e := d.table[t.Name]
	d.mu.Unlock()
	if e != nil && !e.Self && e.Node == t.Node && e.seq > md.seq {
		// Not counted: memberlist asks before it compares incarnations,
		// so late copies of old alive messages land here all the time.
		// Refusing them stops a replayed old meta with a bumped
		// incarnation from rolling a member's endpoints back.
		return nil, reject(RejectStaleMeta, "meta of "+t.Name+" is older than one already seen")
	}
	return md, nil
}

// rejected counts a rejection and logs it once per node and reason, and
// then only while the refusal log's rate allows (names and details are
// the sender's words: truncated).
func (d *Discovery) rejected(name string, rej *admitError) {
	if rej.reason == RejectStaleMeta {
		return
	}
	d.rejMu.Lock()
	d.rejections[rej.reason]++
	key := name + "\x00" + rej.reason
	first := !d.rejLogged[key]
	if first {
		if len(d.rejLogged) > 10000 {
			clear(d.rejLogged)
		}
		d.rejLogged[key] = true
	}
	d.rejMu.Unlock()
	if first && d.refusalLog.Allow() {
		d.log.Warn("gossip: node not admitted", "node", truncate(name), "reason", rej.reason, "detail", truncate(rej.detail))
	}
}
