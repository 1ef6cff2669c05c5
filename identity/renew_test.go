package identity

import (
	"crypto/tls"
	"errors"
	"os"
	"testing"
	"time"
)

// TestRedeemForIdempotent: a token redeemed for an identity and name
// admits that same identity and name again (a join whose answer was lost),
// and nobody else.
func TestRedeemForIdempotent(t *testing.T) {
	ca := newCA(t, "acme")
	s, _ := newInvites(t, ca)
	tok := mint(t, s, time.Hour, RoleHub)
	beta, mallory := newID(t), newID(t)

	if r, err := s.CheckFor(tok, beta.Public(), "beta", t0); err != nil || r != RoleHub {
		t.Fatalf("CheckFor before use = %v, %v; want hub", r, err)
	}
	if r, err := s.RedeemFor(tok, beta.Public(), "beta", t0.Add(time.Minute)); err != nil || r != RoleHub {
		t.Fatalf("RedeemFor = %v, %v; want hub", r, err)
	}
	// The same admission again, also after the token's own expiry.
	for _, at := range []time.Duration{2 * time.Minute, 2 * time.Hour} {
		if r, err := s.CheckFor(tok, beta.Public(), "beta", t0.Add(at)); err != nil || r != RoleHub {
			t.Errorf("CheckFor by the redeemer at +%s = %v, %v; want hub", at, r, err)
		}
		if r, err := s.RedeemFor(tok, beta.Public(), "beta", t0.Add(at)); err != nil || r != RoleHub {
			t.Errorf("RedeemFor by the redeemer at +%s = %v, %v; want hub", at, r, err)
		}
	}
	// Anyone else: used.
	for _, tc := range []struct {
		what string
		node NodePublic
		name string
	}{
		{"another identity, same name", mallory.Public(), "beta"},
		{"another identity, another name", mallory.Public(), "mallory"},
		{"same identity, another name", beta.Public(), "beta2"},
		{"no identity", NodePublic{}, "beta"},
	} {
		if _, err := s.RedeemFor(tok, tc.node, tc.name, t0.Add(3*time.Minute)); !errors.Is(err, ErrTokenUsed) {
			t.Errorf("RedeemFor by %s = %v, want ErrTokenUsed", tc.what, err)
		}
		if _, err := s.CheckFor(tok, tc.node, tc.name, t0.Add(3*time.Minute)); !errors.Is(err, ErrTokenUsed) {
			t.Errorf("CheckFor by %s = %v, want ErrTokenUsed", tc.what, err)
		}
	}
	// The plain one-time API knows no identity: used is used.
	if _, err := s.Redeem(tok, "beta", t0.Add(3*time.Minute)); !errors.Is(err, ErrTokenUsed) {
		t.Errorf("Redeem of a RedeemFor token = %v, want ErrTokenUsed", err)
	}
	// A token redeemed the old way (no identity recorded) stays used for all.
	old := mint(t, s, time.Hour, 0)
	if _, err := s.Redeem(old, "beta "+beta.Public().ShortString(), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemFor(old, beta.Public(), "beta", t0); !errors.Is(err, ErrTokenUsed) {
		t.Errorf("RedeemFor of a token redeemed without identity = %v, want ErrTokenUsed", err)
	}
	// Unknown and expired unused tokens are still refused as such.
	if _, err := s.RedeemFor(mint(t, s, time.Minute, 0), beta.Public(), "beta", t0.Add(time.Hour)); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("RedeemFor of an expired token = %v, want ErrTokenExpired", err)
	}
}

// TestLoadMemberExpired: an expired ticket and certificate still load (the
// node must start to renew), reported by Expired; SaveRenewal replaces them
// with verified new ones.
func TestLoadMemberExpired(t *testing.T) {
	d := stateDir(t)
	m, err := d.InitMesh("acme", "alpha", RoleHub, 3*time.Minute, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Ticket.Lifetime(); got != 3*time.Minute+time.Minute {
		t.Errorf("ticket lifetime %s, want 3m validity + 1m backdating", got)
	}
	if m.Cert.Cert.NotAfter.Sub(t0) != 3*time.Minute {
		t.Errorf("certificate valid until t0+%s, want t0+3m", m.Cert.Cert.NotAfter.Sub(t0))
	}
	later := t0.Add(time.Hour)
	l, err := d.LoadMember(later)
	if err != nil {
		t.Fatalf("LoadMember of an expired member: %v", err)
	}
	if !l.Expired(later) || l.Expired(t0) {
		t.Errorf("Expired(+1h) = %v, Expired(t0) = %v; want true, false", l.Expired(later), l.Expired(t0))
	}
	if err := l.ID.CheckOwn(l.Ticket, l.Trust, later); !errors.Is(err, ErrExpired) {
		t.Errorf("CheckOwn of the expired ticket = %v, want ErrExpired", err)
	}

	// A renewal issued later replaces both, atomically and verified.
	e, err := m.CA.EnrollFor("alpha", m.ID.Public(), m.ID.WireGuardPublic(), m.Ticket.Roles, later, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.SaveRenewal(l, e.Ticket, e.NodeCertPEM, t0); err == nil {
		t.Errorf("SaveRenewal accepted credentials not valid yet")
	}
	other, err := m.CA.EnrollFor("beta", m.ID.Public(), m.ID.WireGuardPublic(), 0, later, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.SaveRenewal(l, other.Ticket, other.NodeCertPEM, later); err == nil {
		t.Errorf("SaveRenewal accepted a ticket under another name")
	}
	nm, err := d.SaveRenewal(l, e.Ticket, e.NodeCertPEM, later)
	if err != nil {
		t.Fatalf("SaveRenewal: %v", err)
	}
	if nm.Expired(later) || nm.CA == nil {
		t.Errorf("renewed member: expired %v, CA %v", nm.Expired(later), nm.CA != nil)
	}
	r, err := d.LoadMember(later)
	if err != nil || r.Expired(later) || !r.Ticket.Equal(nm.Ticket) {
		t.Fatalf("LoadMember after SaveRenewal: %v (expired %v)", err, r != nil && r.Expired(later))
	}
	if fileMode(t, d.TicketPath()) != 0o644 || fileMode(t, d.NodeCertPath()) != 0o644 {
		t.Errorf("renewed files have modes %v, %v", fileMode(t, d.TicketPath()), fileMode(t, d.NodeCertPath()))
	}
	if entries, _ := os.ReadDir(string(d)); len(entries) == 0 {
		t.Fatal("state directory empty")
	}
	for _, name := range dirEntries(t, string(d)) {
		if len(name) > 0 && name[0] == '.' {
			t.Errorf("temporary file %s left behind", name)
		}
	}

	if _, err := d.InitMesh("acme", "x", 0, 30*time.Second, t0); err == nil {
		t.Errorf("InitMesh accepted a member validity under a minute")
	}
}

// TestCertHolderSwap: TLS configs made from a CertHolder present the
// certificate held at each handshake, so a renewed certificate is used by
// the next connection without rebuilding (or reloading) the config.
func TestCertHolderSwap(t *testing.T) {
	ca := newCA(t, "acme")
	alpha, beta := newNode(t, ca, "alpha"), newNode(t, ca, "beta")
	nc2, err := ca.IssueNodeCert("alpha", alpha.id.Public(), t0.Add(time.Minute), NodeCertValidity)
	if err != nil {
		t.Fatal(err)
	}
	tls2, err := alpha.id.TLSCertificate(nc2)
	if err != nil {
		t.Fatal(err)
	}
	h := NewCertHolder(alpha.tls)
	route, server := h.RouteTLS(ca.Trust), h.ServerTLS(ca.Trust)
	for _, c := range []*tls.Config{route, server} {
		if len(c.Certificates) != 0 || c.GetCertificate == nil {
			t.Fatalf("holder config carries a fixed certificate")
		}
	}
	if route.GetClientCertificate == nil || route.ClientAuth != tls.RequireAndVerifyClientCert || route.ServerName != "route.acme" {
		t.Fatalf("holder route config lost the route TLS settings")
	}
	presented := func(client, server *tls.Config) (*tls.ConnectionState, *tls.ConnectionState) {
		cerr, serr, cst, sst := handshake(t, atT0(client.Clone()), atT0(server.Clone()))
		if cerr != nil || serr != nil {
			t.Fatalf("handshake: client %v, server %v", cerr, serr)
		}
		return &cst, &sst
	}
	// alpha listens (server side) and dials (route client side).
	cst, _ := presented(withServerName(ClientTLS(ca.Trust, nil), "alpha.acme"), server)
	if !cst.PeerCertificates[0].Equal(alpha.cert.Cert) {
		t.Fatal("before the swap: not the first certificate")
	}
	h.Set(tls2)
	cst, _ = presented(withServerName(ClientTLS(ca.Trust, nil), "alpha.acme"), server)
	if !cst.PeerCertificates[0].Equal(nc2.Cert) {
		t.Error("server after the swap: still the old certificate")
	}
	_, sst := presented(route, RouteTLS(beta.tls, ca.Trust))
	if !sst.PeerCertificates[0].Equal(nc2.Cert) {
		t.Error("route client after the swap: still the old certificate")
	}
	cst, _ = presented(RouteTLS(beta.tls, ca.Trust), route)
	if !cst.PeerCertificates[0].Equal(nc2.Cert) {
		t.Error("route server after the swap: still the old certificate")
	}
}

func withServerName(c *tls.Config, name string) *tls.Config {
	c = c.Clone()
	c.ServerName = name
	return c
}
