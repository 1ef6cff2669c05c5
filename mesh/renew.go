package mesh

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/discovery/enroll"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// A node renews its ticket and node certificate by itself at two thirds of
// their lifetime, from any admin it can reach (itself, when it holds the
// CA), and retries with backoff until it succeeds. The renewed pair is
// written atomically, re-signed into the gossip meta, and presented by
// NATS and the enrollment endpoint from their next TLS handshake on, so
// that open routes and clients are never dropped.

// renewAt is when m should renew: two thirds into the shorter of its
// ticket's and its certificate's lifetimes.
func renewAt(m *identity.Member) time.Time {
	t, c := m.Ticket, m.Cert.Cert
	at := t.NotBefore.Add(t.Lifetime() * 2 / 3)
	if cat := c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3); cat.Before(at) {
		at = cat
	}
	return at
}

// renewBackoff is the wait before retry attempt (1, 2, …) of a failed
// renewal: doubling from 2 s, at most a tenth of the lifetime (so a short
// test lifetime still gets several tries before expiry) and at most 5 min,
// with up to a quarter added at random so that a mesh whose admin was down
// does not come back in lockstep.
func renewBackoff(attempt int, lifetime time.Duration) time.Duration {
	ceiling := min(5*time.Minute, lifetime/10)
	ceiling = max(ceiling, time.Second)
	d := 2 * time.Second
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d + time.Duration(rand.Int64N(int64(d/4)+1))
}

// renewer is the node's renewal state, for the loop and status.
type renewer struct {
	// run makes renewals one at a time. It is held across the network
	// round trips, so nothing else waits on it: status and metrics read
	// the fields under mu, which is never held across I/O.
	run sync.Mutex

	mu       sync.Mutex // guards the fields below
	last     time.Time  // last successful renewal in this run
	count    int        // successful renewals in this run
	attempts int        // failed attempts since the last success
	lastErr  error
	next     time.Time // when the loop tries next
	now      chan struct{}
	admins   []discovery.Member // admins of the persisted table at start
}

// current is the node's membership as of its last renewal.
func (n *Node) current() *identity.Member { return n.cur.Load() }

// degraded says why the node cannot be a full member, or "". The node
// judges its own ticket by its own clock, without the ClockSkew that
// members allow each other: it is degraded from the second the ticket ends
// (its certificate, which TLS checks without skew, ends with it).
func (n *Node) degraded(now time.Time) string {
	m := n.current()
	switch {
	case now.After(m.Ticket.NotAfter):
		return fmt.Sprintf("ticket expired at %s: members refuse this node until it renews from an admin", m.Ticket.NotAfter.UTC().Format(time.RFC3339))
	case now.After(m.Cert.Cert.NotAfter):
		return fmt.Sprintf("node certificate expired at %s: members refuse its NATS routes until it renews from an admin", m.Cert.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return ""
}

// renewLoop renews at renewAt and retries failures with backoff until ctx
// ends. An expired node tries at once.
func (n *Node) renewLoop(ctx context.Context) {
	for {
		m := n.current()
		n.renew.mu.Lock()
		wait := max(time.Until(renewAt(m)), 0)
		if n.renew.attempts > 0 {
			wait = renewBackoff(n.renew.attempts, m.Ticket.Lifetime())
		}
		n.renew.next = time.Now().Add(wait)
		n.renew.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-n.renew.now:
			t.Stop()
		case <-t.C:
		}
		if _, err := n.Renew(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("renewal failed; retrying", "err", err, "attempt", n.renewAttempts())
		}
	}
}

func (n *Node) renewAttempts() int {
	n.renew.mu.Lock()
	defer n.renew.mu.Unlock()
	return n.renew.attempts
}

// RenewResult is what a renewal produced.
type RenewResult struct {
	From          string // the admin that issued it ("self" on an admin)
	TicketExpires time.Time
	CertExpires   time.Time
}

// Renew renews the node's ticket and node certificate now (`meshnode
// renew`; the loop calls it on schedule) and puts them to use.
func (n *Node) Renew(ctx context.Context) (*RenewResult, error) {
	n.renew.run.Lock()
	defer n.renew.run.Unlock()
	res, err := n.renewLocked(ctx)
	n.renew.mu.Lock()
	defer n.renew.mu.Unlock()
	if err != nil {
		n.renew.attempts++
		n.renew.lastErr = err
		return nil, err
	}
	n.renew.attempts, n.renew.lastErr = 0, nil
	n.renew.last = time.Now()
	n.renew.count++
	return res, nil
}

func (n *Node) renewLocked(ctx context.Context) (*RenewResult, error) {
	m := n.current()
	now := time.Now()
	var (
		ticket, certPEM []byte
		from            string
		learnt          []discovery.Member
	)
	if m.CA != nil {
		// An admin is its own admin: no network, and a CA node is never
		// stuck waiting for another one.
		e, err := m.CA.EnrollFor(m.Ticket.Name, m.ID.Public(), m.ID.WireGuardPublic(), m.Ticket.Roles, now, n.cfg.MemberValidity)
		if err != nil {
			return nil, fmt.Errorf("renew with own CA: %w", err)
		}
		ticket, certPEM, from = e.Ticket, e.NodeCertPEM, "self"
	} else {
		r, peer, err := n.renewFromAdmins(ctx, m)
		if err != nil {
			return nil, err
		}
		ticket, certPEM, from, learnt = r.Ticket, r.NodeCertPEM, peer, r.Members
		if v := r.Mesh.MemberValidity(); v > 0 && v != n.cfg.MemberValidity && identity.CheckMemberValidity(v) == nil {
			n.log.Info("adopting the mesh's member validity", "member_validity", v, "was", n.cfg.MemberValidity)
			n.cfg.MemberValidity = v
			// Only this setting goes to meshnode.toml: n.cfg also holds
			// command-line flags, which must not become file settings.
			if err := saveMemberValidity(n.cfg.StateDir, v); err != nil {
				n.log.Warn("member validity not saved", "err", err)
			}
		}
	}
	nm, err := n.cfg.StateDir.SaveRenewal(m, ticket, certPEM, time.Now())
	if err != nil {
		return nil, err
	}
	if err := n.useMember(nm); err != nil {
		return nil, err
	}
	if n.disc != nil && len(learnt) > 0 {
		n.disc.Learn(learnt)
	}
	n.log.Info("renewed ticket and node certificate", "from", from,
		"ticket_expires", nm.Ticket.NotAfter, "cert_expires", nm.Cert.Cert.NotAfter, "next", renewAt(nm))
	return &RenewResult{From: from, TicketExpires: nm.Ticket.NotAfter, CertExpires: nm.Cert.Cert.NotAfter}, nil
}

// useMember puts renewed credentials to use: the TLS certificate of NATS
// (routes and clients) and of the enrollment endpoint for new handshakes,
// and the ticket in the gossip meta.
func (n *Node) useMember(nm *identity.Member) error {
	cert, err := nm.ID.TLSCertificate(nm.Cert)
	if err != nil {
		return err
	}
	n.tlsCert.Set(cert)
	if srv := n.enrollSrv.Load(); srv != nil {
		if err := srv.SetCertificate(nm.Cert); err != nil {
			return err
		}
	}
	n.cur.Store(nm)
	if n.disc != nil {
		if err := n.disc.SetTicket(nm.Ticket); err != nil {
			return err
		}
	}
	return nil
}

// renewFromAdmins asks every admin it knows, live ones first, until one
// renews the node.
func (n *Node) renewFromAdmins(ctx context.Context, m *identity.Member) (*enroll.Renewal, string, error) {
	targets := n.adminTargets()
	if len(targets) == 0 {
		return nil, "", errors.New("no admin member known to renew from")
	}
	var errs []error
	for _, peer := range targets {
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		r, err := enroll.Renew(rctx, peer, m, n.eps)
		cancel()
		if err == nil {
			return r, peer, nil
		}
		errs = append(errs, err)
		if rev, ok := enroll.Revoked(err, m); ok {
			n.takeOwnRevocation(rev, peer)
			break
		}
		var ee *enroll.Error
		if errors.As(err, &ee) && (ee.Code == enroll.CodeRevoked || ee.Code == enroll.CodeRenewTooLate) {
			break // every admin would say the same
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", fmt.Errorf("renew: %w", errors.Join(errs...))
}

// adminTargets are the enrollment endpoints of the admins this node knows:
// the gossip table's (live first) and those of the member table persisted
// before this run, which still name where the admins are when this node
// was away so long that their tickets in it have expired. Each admin is
// asked on its underlay endpoints' addresses and its overlay address, at
// this node's own enrollment port (the mesh's).
func (n *Node) adminTargets() []string { return n.enrollTargets(true) }

// enrollTargets are adminTargets, followed (unless adminsOnly) by every
// other member's endpoints, live ones first.
func (n *Node) enrollTargets(adminsOnly bool) []string {
	port := defaults.EnrollPort
	if _, p, err := net.SplitHostPort(n.cfg.EnrollAddr); err == nil {
		if v, err := strconv.Atoi(p); err == nil && v > 0 {
			port = v
		}
	}
	var admins, others []discovery.Member
	if n.disc != nil {
		for _, m := range n.disc.Members() {
			switch {
			case m.Self:
			case m.Roles.Has(identity.RoleAdmin):
				admins = append(admins, m)
			default:
				others = append(others, m)
			}
		}
	}
	liveFirst := func(a, b discovery.Member) int {
		return boolInt(b.State == discovery.StateAlive) - boolInt(a.State == discovery.StateAlive)
	}
	slices.SortStableFunc(admins, liveFirst)
	slices.SortStableFunc(others, liveFirst)
	admins = append(admins, n.renew.admins...)
	if !adminsOnly {
		admins = append(admins, others...)
	}
	var out []string
	seen := map[string]bool{}
	add := func(a netip.Addr) {
		if !a.IsValid() {
			return
		}
		s := net.JoinHostPort(a.Unmap().String(), strconv.Itoa(port))
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, a := range admins {
		if a.Node == n.member.ID.Public() {
			continue
		}
		for _, ep := range a.Endpoints {
			add(ep.Addr())
		}
		add(a.Addr)
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// saveMemberValidity records the mesh's member validity in meshnode.toml,
// leaving the file's other settings as they are.
func saveMemberValidity(dir identity.StateDir, v time.Duration) error {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return err
	}
	cfg.MemberValidity = v
	return SaveConfig(cfg)
}
