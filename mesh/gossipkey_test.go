package mesh

import (
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
