package mesh

import (
	"crypto/ecdsa"
	"crypto/x509"
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
)

func TestRouteFrom(t *testing.T) {
	now := time.Now()
	ca, err := identity.NewCA("routes", now)
	if err != nil {
		t.Fatal(err)
	}
	member := func(name string, state discovery.State) (discovery.Member, *x509.Certificate) {
		seed, err := identity.NewSeed()
		if err != nil {
			t.Fatal(err)
		}
		id := identity.FromSeed(seed)
		nc, err := ca.IssueNodeCert(name, id.Public(), now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return discovery.Member{Name: name, Node: id.Public(), Addr: identity.OverlayAddr(ca.Trust.Prefix(), id.Public()), State: state}, nc.Cert
	}
	a, certA := member("a", discovery.StateAlive)
	b, certB := member("b", discovery.StateAlive)
	dead, certDead := member("dead", discovery.StateDead)
	stranger, certStranger := member("stranger", discovery.StateAlive)
	members := []discovery.Member{a, b, dead}

	cases := []struct {
		name   string
		remote netip.Addr
		cert   *x509.Certificate
		want   bool
	}{
		{"member with its own certificate", a.Addr, certA, true},
		{"another member's certificate", a.Addr, certB, false},
		{"member certificate from a non-member address", stranger.Addr, certA, false},
		{"non-member with its own certificate", stranger.Addr, certStranger, false},
		{"dead member", dead.Addr, certDead, false},
		{"no certificate", a.Addr, nil, false},
		{"certificate without an Ed25519 key", a.Addr, &x509.Certificate{PublicKey: &ecdsa.PublicKey{}}, false},
	}
	for _, tc := range cases {
		if got := routeFrom(tc.remote, tc.cert, members); got != tc.want {
			t.Errorf("%s: routeFrom = %v, want %v", tc.name, got, tc.want)
		}
	}
}
