package mesh

import (
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// TestRenewSchedule: a member renews at two thirds of the shorter lifetime
// of its ticket and certificate.
func TestRenewSchedule(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := identity.NewCA("sched", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := identity.NewSeed()
	id := identity.FromSeed(seed)
	for _, validity := range []time.Duration{3 * time.Minute, 365 * 24 * time.Hour} {
		tk, err := ca.IssueTicket("n", id.Public(), id.WireGuardPublic(), 0, now, validity)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := ca.IssueNodeCert("n", id.Public(), now, validity)
		if err != nil {
			t.Fatal(err)
		}
		m := &identity.Member{ID: id, Trust: ca.Trust, Ticket: tk, Cert: nc}
		// Both start a minute back (clock skew), so the lifetime is
		// validity + 1m and two thirds of it are counted from there.
		want := now.Add(-time.Minute).Add((validity + time.Minute) * 2 / 3)
		if got := renewAt(m); !got.Equal(want) {
			t.Errorf("validity %s: renewAt %s, want %s", validity, got, want)
		}
		// A certificate shorter than the ticket decides.
		short, err := ca.IssueNodeCert("n", id.Public(), now, validity/2)
		if err != nil {
			t.Fatal(err)
		}
		m.Cert = short
		if want := now.Add(-time.Minute).Add((validity/2 + time.Minute) * 2 / 3); !renewAt(m).Equal(want) {
			t.Errorf("validity %s, cert half as long: renewAt %s, want %s", validity, renewAt(m), want)
		}
	}
}

// TestRenewBackoff: retries double from 2 s up to min(5 min, lifetime/10),
// with at most a quarter of jitter, and never stop.
func TestRenewBackoff(t *testing.T) {
	for _, tc := range []struct {
		lifetime time.Duration
		ceiling  time.Duration
	}{
		{4 * time.Minute, 24 * time.Second},
		{365 * 24 * time.Hour, 5 * time.Minute},
		{5 * time.Second, time.Second}, // never below a second
	} {
		prev := time.Duration(0)
		for attempt := 1; attempt <= 40; attempt++ {
			base := min(2*time.Second<<min(attempt-1, 30), tc.ceiling)
			for range 20 {
				d := renewBackoff(attempt, tc.lifetime)
				if d < base || d > base+base/4 {
					t.Fatalf("lifetime %s attempt %d: %s, want %s..%s", tc.lifetime, attempt, d, base, base+base/4)
				}
			}
			if base < prev {
				t.Fatalf("lifetime %s: backoff shrank at attempt %d", tc.lifetime, attempt)
			}
			prev = base
		}
	}
}

// TestNewExpiredStartsDegraded: a state directory whose ticket ran out
// still makes a node (it must run to renew), and its status names the
// degraded state; an admin renews itself from its own CA.
func TestNewExpiredStartsDegraded(t *testing.T) {
	dir := identity.StateDir(t.TempDir())
	if _, err := dir.InitMesh("old", "alpha", 0, time.Minute, time.Now().Add(-10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	cfg := Config{StateDir: dir, MemberValidity: 3 * time.Minute}
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New with an expired ticket: %v", err)
	}
	st := n.Status()
	if st.Degraded == "" || st.Healthy {
		t.Fatalf("expired node: degraded %q, healthy %v", st.Degraded, st.Healthy)
	}
	res, err := n.Renew(t.Context())
	if err != nil {
		t.Fatalf("admin renewing from its own CA: %v", err)
	}
	if res.From != "self" || time.Until(res.TicketExpires) < 2*time.Minute {
		t.Fatalf("renewal %+v", res)
	}
	st = n.Status()
	if st.Degraded != "" || st.Renewal.Count != 1 || st.Renewal.Last.IsZero() || !st.TicketExpires.Equal(res.TicketExpires) {
		t.Fatalf("after renewal: degraded %q, renewal %+v, ticket expires %s", st.Degraded, st.Renewal, st.TicketExpires)
	}
	m, err := dir.LoadMember(time.Now())
	if err != nil || m.Expired(time.Now()) || !m.Ticket.NotAfter.Equal(res.TicketExpires) {
		t.Fatalf("renewal not stored: %v", err)
	}
}
