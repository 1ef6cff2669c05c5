package enroll

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
)

// fakeKeys hands out the entry set last.
type fakeKeys struct {
	mu sync.Mutex
	e  identity.GossipKeyEntry
}

func (k *fakeKeys) set(e identity.GossipKeyEntry) { k.mu.Lock(); k.e = e; k.mu.Unlock() }

func (k *fakeKeys) CurrentGossipKey() (identity.GossipKeyEntry, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.e, k.e.Notice != nil
}

func TestFetchGossipKey(t *testing.T) {
	for _, withCA := range []bool{true, false} {
		f := newEnrollFixtureWith(t, withCA, 1000, func(cfg *ServerConfig) { cfg.GossipKeys = cfg.Members.(*discovery.Discovery) })
		m := f.tm.enroll("member", 0)
		ctx := context.Background()

		k, err := FetchGossipKey(ctx, f.addr, m)
		if err != nil || k.Notice != nil {
			t.Fatalf("withCA=%v: before any rotation: %+v, %v", withCA, k, err)
		}
		n, err := f.d.RotateGossipKey(f.tm.ca, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		want, _ := f.d.CurrentGossipKey()
		k, err = FetchGossipKey(ctx, f.addr, m)
		if err != nil {
			t.Fatal(err)
		}
		if k.Notice == nil || !k.Notice.Equal(n) || k.Key != want.Key {
			t.Fatalf("fetched %+v, want epoch %d and its key", k.Notice, n.Epoch)
		}

		// Only a proven identity with a valid ticket gets the key.
		thief := f.tm.enroll("thief", 0)
		stolen := *thief
		stolen.Ticket = m.Ticket
		var ee *Error
		if _, err := FetchGossipKey(ctx, f.addr, &stolen); !errors.As(err, &ee) || ee.Code != CodeBadSignature {
			t.Fatalf("someone else's ticket: %v", err)
		}
		exp := *m
		exp.Ticket, _ = f.tm.ca.IssueTicket("member", m.ID.Public(), m.ID.WireGuardPublic(), 0, time.Now().Add(-100*time.Hour), time.Hour)
		if _, err := FetchGossipKey(ctx, f.addr, &exp); !errors.As(err, &ee) || ee.Code != CodeBadTicket {
			t.Fatalf("expired ticket: %v", err)
		}
		rev, _ := f.tm.ca.RevokeMember(identity.RevokeRequest{Node: m.ID.Public(), Name: "member", Issuer: "admin", Reason: "stolen"}, time.Now())
		if err := f.d.Revoke(rev); err != nil {
			t.Fatal(err)
		}
		_, err = FetchGossipKey(ctx, f.addr, m)
		if got, ok := Revoked(err, m); !ok || got.Summary() != rev.Summary() {
			t.Fatalf("revoked member: %v (record %v)", err, got)
		}
	}
}

// A member that hands out a key other than the notice's, or a notice the
// CA did not sign, is not believed.
func TestFetchGossipKeyChecksTheAnswer(t *testing.T) {
	for _, c := range []struct {
		name      string
		wrongKey  bool
		forgedSig bool
		want      string
	}{
		{"wrong key", true, false, "key id"},
		{"bad signature", false, true, "bad CA signature"},
	} {
		keys := &fakeKeys{}
		f := newEnrollFixtureWith(t, true, 1000, func(cfg *ServerConfig) { cfg.GossipKeys = keys })
		key, _ := identity.NewGossipKey()
		n, _ := f.tm.ca.SignGossipKeyNotice(4, key, time.Now(), time.Now().Add(time.Minute))
		e := identity.GossipKeyEntry{Notice: n, Key: key}
		if c.wrongKey {
			e.Key[0] ^= 1
		}
		if c.forgedSig {
			n.Signature[0] ^= 1
		}
		keys.set(e)
		m := f.tm.enroll("member", 0)
		if _, err := FetchGossipKey(context.Background(), f.addr, m); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
}

// Finding 1 of issue 14: a revoked box that was away is refused by hello
// and renew, and now also told why, with a record it can verify.
func TestRevokedRefusalCarriesTheRecord(t *testing.T) {
	f := newEnrollFixture(t, true, 1000)
	m := f.tm.enroll("gone", 0)
	rev, _ := f.tm.ca.RevokeMember(identity.RevokeRequest{Node: m.ID.Public(), Name: "gone", Issuer: "admin", Reason: "lost in transit"}, time.Now())
	if err := f.d.Revoke(rev); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, helloErr := Hello(ctx, f.addr, m, nil)
	_, renewErr := Renew(ctx, f.addr, m, nil)
	for what, err := range map[string]error{"hello": helloErr, "renew": renewErr} {
		r, ok := Revoked(err, m)
		if !ok {
			t.Fatalf("%s: %v carries no verifiable revocation", what, err)
		}
		if !strings.Contains(r.Summary(), "revoked by admin at ") || !strings.Contains(r.Summary(), "lost in transit") {
			t.Fatalf("%s: %s", what, r.Summary())
		}
		if !strings.Contains(err.Error(), "lost in transit") {
			t.Errorf("%s: the message does not say why: %v", what, err)
		}
		// Another member's identity does not take the record as its own.
		if _, ok := Revoked(err, f.tm.enroll("bystander", 0)); ok {
			t.Fatalf("%s: a record for another identity was taken", what)
		}
	}
	// A record the mesh CA did not sign is not believed.
	other := newTestMesh(t)
	fake, _ := other.ca.Revoke(m.ID.Public(), "forged", time.Now())
	if _, ok := Revoked(&Error{Code: CodeRevoked, Revocation: fake}, m); ok {
		t.Fatal("a revocation signed by another CA was believed")
	}
}

// Finding 2 of issue 14: GET /v2/ticket had no limit at all. It has a
// bucket per prefix now: a joiner's few requests pass, a flood does not,
// and the bucket refills.
func TestTicketRateLimited(t *testing.T) {
	f := newEnrollFixture(t, true, 1000)
	for i := range defaults.EnrollTicketBurst {
		if status, er := f.post(http.MethodGet, "/v2/ticket", nil); status != http.StatusOK {
			t.Fatalf("request %d of a burst of %d: %d %+v", i+1, defaults.EnrollTicketBurst, status, er)
		}
	}
	status, er := f.post(http.MethodGet, "/v2/ticket", nil)
	if status != http.StatusTooManyRequests || er.Code != CodeRateLimited {
		t.Fatalf("beyond the burst: %d %+v", status, er)
	}
	if f.srv.Stats().RateLimited == 0 {
		t.Error("a limited ticket request is not counted")
	}
	f.mu.Lock()
	f.clock = f.clock.Add(time.Duration(float64(time.Second) / defaults.EnrollTicketRate))
	f.mu.Unlock()
	if status, er := f.post(http.MethodGet, "/v2/ticket", nil); status != http.StatusOK {
		t.Fatalf("after the bucket refilled: %d %+v", status, er)
	}
	// The failure limit still does not apply: a join with a valid token
	// from this address is answered once the bucket has a token.
	f.mu.Lock()
	f.clock = f.clock.Add(time.Duration(float64(time.Second) / defaults.EnrollTicketRate))
	f.mu.Unlock()
	id := newIdentity(t)
	if _, err := Join(context.Background(), f.addr, f.token(time.Hour, 0, time.Now()), id, "joiner", nil); err != nil {
		t.Fatalf("an honest join after the limit: %v", err)
	}
}
