package mesh

import (
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

func TestRotationDue(t *testing.T) {
	t0 := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
	rev := func(issuer string, at time.Duration) *identity.Revocation {
		return &identity.Revocation{Issuer: issuer, Time: t0.Add(at)}
	}
	notice := &identity.GossipKeyNotice{Epoch: 1, UseAt: t0.Add(10 * time.Second)}
	for _, c := range []struct {
		name   string
		revs   []*identity.Revocation
		newest *identity.GossipKeyNotice
		want   bool
	}{
		{"nothing revoked", nil, nil, false},
		{"revoked by this admin, never rotated", []*identity.Revocation{rev("alpha", 0)}, nil, true},
		{"revoked by another admin", []*identity.Revocation{rev("beta", 0)}, nil, false},
		{"rotated after the revocation (online revoke)", []*identity.Revocation{rev("alpha", 0)}, notice, false},
		{"revoked after the last rotation (offline revoke)", []*identity.Revocation{rev("alpha", 0), rev("alpha", time.Hour)}, notice, true},
	} {
		if got := rotationDue("alpha", c.revs, c.newest); got != c.want {
			t.Errorf("%s: due = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFetchBackoff(t *testing.T) {
	t0 := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
	var b backoff
	base, ceiling := time.Second, 4*time.Second
	var fired []time.Duration
	for at := time.Duration(0); at <= 20*time.Second; at += 500 * time.Millisecond {
		if b.due(true, t0.Add(at), base, ceiling) {
			fired = append(fired, at)
		}
	}
	want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second, 11 * time.Second, 15 * time.Second, 19 * time.Second}
	if !slices.Equal(fired, want) {
		t.Fatalf("fetches at %v, want %v (doubling from 1 s up to 4 s)", fired, want)
	}
	if b.due(false, t0.Add(time.Minute), base, ceiling) {
		t.Fatal("due without a reason")
	}
	if !b.due(true, t0.Add(time.Minute), base, ceiling) || b.due(true, t0.Add(time.Minute+500*time.Millisecond), base, ceiling) {
		t.Fatal("the wait did not start over once the reason went")
	}
}
