package enroll

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
)

// v1JoinBody is a join request as builds before join v2 sent it: signed by
// the identity, with nothing proving the WireGuard key it names.
func v1JoinBody(t *testing.T, id *identity.Identity, name string, wg identity.WireGuardPublic, token string) []byte {
	ep := netip.MustParseAddrPort("198.51.100.20:51820")
	b := []byte("meshnode join v1")
	b = append(b, byte(len(name)))
	b = append(b, name...)
	pub := id.Public()
	b = append(b, pub[:]...)
	b = append(b, wg[:]...)
	b = appendEndpoints(b, []netip.AddrPort{ep})
	h := sha256.Sum256([]byte(token))
	b = append(b, h[:]...)
	body, err := json.Marshal(map[string]any{
		"version": 1, "name": name, "node": pub, "wireguard": wg,
		"endpoints": []netip.AddrPort{ep}, "token": token, "signature": id.Sign(b),
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// Issue 14 finding 1: a join naming another member's WireGuard key was
// admitted, because the request proved the identity key only. Every node
// then failed to apply its WireGuard peers. A join now proves the private
// half of its WireGuard key, and a key (or identity) in use is refused.
func TestJoinProvesWireGuardKey(t *testing.T) {
	f := newEnrollFixture(t, true, 1000)
	now := time.Now()
	victim := f.tm.enroll("victim", 0)
	f.d.Admit(victim.Ticket, nil)
	adminWG := f.self.ID.WireGuardPublic()

	// A member admitted before this fix with the WireGuard key of someone
	// who has not joined yet: the key's real holder is refused now too.
	holder := newIdentity(t)
	squatter := newIdentity(t)
	sq, err := f.tm.ca.IssueTicket("squatter", squatter.Public(), holder.WireGuardPublic(), 0, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.d.Admit(sq, nil)

	first := newIdentity(t)
	if _, err := Join(context.Background(), f.addr, f.token(time.Hour, 0, now), first, "first", nil); err != nil {
		t.Fatal(err)
	}

	impostor := newIdentity(t)
	tok := f.token(time.Hour, 0, now)
	// forged is a v2 request by impostor naming key wg, with the proof
	// that proof computes over the signed bytes.
	forged := func(wg identity.WireGuardPublic, proof func(signed []byte) []byte) []byte {
		req := joinRequest{Version: joinVersion, Name: "impostor", Node: impostor.Public(), WireGuard: wg, Token: tok}
		req.Signature = impostor.Sign(req.signed())
		req.WireGuardProof = proof(req.signed())
		b, _ := json.Marshal(req)
		return b
	}
	proveBy := func(prover *identity.Identity, toward identity.WireGuardPublic) func([]byte) []byte {
		return func(signed []byte) []byte {
			p, err := prover.WireGuardProof(toward, joinProofDomain, signed)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	zero := func([]byte) []byte { return make([]byte, identity.WireGuardProofSize) }
	otherNode := newIdentity(t).WireGuardPublic()

	cases := []struct {
		name   string
		path   string
		body   []byte
		status int
		code   string
		says   string
	}{
		{"v1 join with a copied key (admitted before the fix)", "/v1/join", v1JoinBody(t, impostor, "impostor", victim.ID.WireGuardPublic(), tok),
			400, CodeVersion, "upgrade"},
		{"v2 join with a copied key, proof by the impostor's own key", "/v2/join", forged(victim.ID.WireGuardPublic(), proveBy(impostor, adminWG)),
			400, CodeBadProof, "does not prove its WireGuard key"},
		{"v2 join with a zero proof", "/v2/join", forged(victim.ID.WireGuardPublic(), zero),
			400, CodeBadProof, "does not prove"},
		{"own key, proof toward another node", "/v2/join", forged(impostor.WireGuardPublic(), proveBy(impostor, otherNode)),
			400, CodeBadProof, "does not prove"},
		{"a key held by another member, proved by its real holder", "/v2/join", signedJoinBody(t, holder, "holder", tok, adminWG),
			409, CodeKeyTaken, `already used by member "squatter"`},
		{"this node's own keys", "/v2/join", signedJoinBody(t, f.self.ID, "admin2", tok, adminWG),
			409, CodeKeyTaken, "this node's"},
		{"an identity that is a member under another name", "/v2/join", signedJoinBody(t, first, "second", tok, adminWG),
			409, CodeKeyTaken, `already member "first"`},
	}
	before := len(f.d.Members())
	admitted := f.admittedCount()
	for _, c := range cases {
		status, er := f.post(http.MethodPost, c.path, c.body)
		if status != c.status || er.Code != c.code || !strings.Contains(er.Error, c.says) {
			t.Errorf("%s: got %d %q %q, want %d %q saying %q", c.name, status, er.Code, er.Error, c.status, c.code, c.says)
		}
	}
	if n := len(f.d.Members()); n != before || f.admittedCount() != admitted {
		t.Fatalf("a refused join changed the table (%d → %d) or was admitted", before, n)
	}
	if _, err := f.inv.Check(tok, time.Now()); err != nil {
		t.Fatalf("a refused join used up the token: %v", err)
	}
	// The impostor with its own key is welcome.
	if _, err := Join(context.Background(), f.addr, tok, impostor, "impostor", nil); err != nil {
		t.Fatalf("join with its own key: %v", err)
	}
}

// The newcomer proves its key toward the WireGuard key in the endpoint's
// own ticket, which must be CA-signed, current, and the ticket of the
// identity whose certificate the TLS handshake presented.
func TestCheckAdmitterTicket(t *testing.T) {
	tm := newTestMesh(t)
	admin := tm.enroll("admin", identity.RoleAdmin)
	other := tm.enroll("other", 0)
	chain := []*x509.Certificate{admin.Cert.Cert, tm.ca.Trust.Cert}
	now := time.Now()
	if wg, err := checkAdmitterTicket(admin.Ticket.Marshal(), chain, now); err != nil || wg != admin.ID.WireGuardPublic() {
		t.Fatalf("own ticket: %v, %v", wg, err)
	}
	expired, err := tm.ca.IssueTicket("admin", admin.ID.Public(), admin.ID.WireGuardPublic(), identity.RoleAdmin, now.Add(-3*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign := newTestMesh(t).enroll("admin", identity.RoleAdmin)
	for _, tc := range []struct {
		name  string
		raw   []byte
		chain []*x509.Certificate
		says  string
	}{
		{"another member's ticket", other.Ticket.Marshal(), chain, `ticket of "other"`},
		{"an expired ticket", expired.Marshal(), chain, "expired"},
		{"a ticket of another CA", foreign.Ticket.Marshal(), chain, "ticket"},
		{"garbage", []byte{1, 2, 3}, chain, "ticket"},
		{"no chain", admin.Ticket.Marshal(), nil, "no verified certificate chain"},
	} {
		if _, err := checkAdmitterTicket(tc.raw, tc.chain, now); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.says)
		}
	}
}

// FuzzCheckAdmitterTicket: whatever bytes an endpoint sends as its ticket,
// only the genuine ticket of the presented certificate is accepted.
func FuzzCheckAdmitterTicket(f *testing.F) {
	tm := newTestMesh(f)
	admin := tm.enroll("admin", identity.RoleAdmin)
	other := tm.enroll("other", 0)
	chain := []*x509.Certificate{admin.Cert.Cert, tm.ca.Trust.Cert}
	genuine := admin.Ticket.Marshal()
	f.Add(genuine)
	f.Add(other.Ticket.Marshal())
	f.Add([]byte{})
	now := time.Now()
	f.Fuzz(func(t *testing.T, raw []byte) {
		wg, err := checkAdmitterTicket(raw, chain, now)
		if err != nil {
			return
		}
		if wg != admin.ID.WireGuardPublic() {
			t.Fatalf("accepted a ticket with WireGuard key %s", wg)
		}
		if tk, perr := identity.ParseTicket(raw); perr != nil || !bytes.Equal(tk.Marshal(), genuine) {
			t.Fatalf("accepted a ticket that is not the genuine one: %x", raw)
		}
	})
}

// A peer from before join v2 answers 404 to the ticket request: the error
// says to upgrade it, and is still the peer's refusal.
func TestOlderPeer(t *testing.T) {
	err := olderPeer(&Error{Peer: "p", Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such endpoint /v2/ticket"})
	var ee *Error
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "speaks only join v1") {
		t.Fatalf("got %v", err)
	}
}

// forgetful is a member table that has forgotten some members, as
// discovery does after a few days without news of them.
type forgetful struct {
	real   Members
	mu     sync.Mutex
	forgot map[string]bool
}

func (f *forgetful) forget(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgot[name] = true
}

func (f *forgetful) Members() []discovery.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []discovery.Member
	for _, m := range f.real.Members() {
		if !f.forgot[m.Name] {
			out = append(out, m)
		}
	}
	return out
}

func (f *forgetful) Admit(t *identity.Ticket, eps []netip.AddrPort) discovery.Member {
	return f.real.Admit(t, eps)
}

func (f *forgetful) NameTaken(name string, node identity.NodePublic) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.forgot[name] && f.real.NameTaken(name, node)
}

// Issue 14 finding 6: the name check asked only the live table, so once
// discovery forgot a member that was away, its name (and WireGuard key)
// went to the next newcomer while its ticket was still valid.
func TestJoinNamesOfUnexpiredTicketsAreReserved(t *testing.T) {
	var table *forgetful
	issuedPath := filepath.Join(t.TempDir(), "issued.json")
	f := newEnrollFixtureWith(t, true, 1000, func(c *ServerConfig) {
		table = &forgetful{real: c.Members, forgot: map[string]bool{}}
		c.Members = table
		c.Issued = identity.OpenIssued(issuedPath)
	})
	now := time.Now()
	away := newIdentity(t)
	if _, err := Join(context.Background(), f.addr, f.token(time.Hour, 0, now), away, "away", nil); err != nil {
		t.Fatal(err)
	}
	gone := newIdentity(t)
	if _, err := Join(context.Background(), f.addr, f.token(time.Hour, 0, now), gone, "gone", nil); err != nil {
		t.Fatal(err)
	}
	table.forget("away")
	table.forget("gone")
	rev, err := f.tm.ca.Revoke(gone.Public(), "retired", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.cfgRevocations().Add(rev); err != nil {
		t.Fatal(err)
	}

	tok := f.token(time.Hour, 0, now)
	var ee *Error
	_, err = Join(context.Background(), f.addr, tok, newIdentity(t), "away", nil)
	if !errors.As(err, &ee) || ee.Code != CodeNameTaken || !strings.Contains(ee.Message, "unexpired ticket") {
		t.Fatalf("the name of an away member with a valid ticket: %v, want %s", err, CodeNameTaken)
	}
	// The same identity under another name, while its ticket is valid.
	_, err = Join(context.Background(), f.addr, tok, away, "renamed", nil)
	if !errors.As(err, &ee) || ee.Code != CodeKeyTaken || !strings.Contains(ee.Message, `as "away"`) {
		t.Fatalf("an away member joining under another name: %v, want %s", err, CodeKeyTaken)
	}
	// A revoked identity's name is free again.
	if _, err := Join(context.Background(), f.addr, tok, newIdentity(t), "gone", nil); err != nil {
		t.Fatalf("the name of a revoked member: %v", err)
	}
	if fi, err := os.Stat(issuedPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("issued tickets file: %v %v", fi, err)
	}
}

func (f *enrollFixture) cfgRevocations() *identity.RevocationSet { return f.srv.cfg.Revocations }

// Issue 14 finding 6: a member without the CA told any caller on the
// underlay the name and underlay endpoints of an admin.
func TestNoCANamesNoAdmin(t *testing.T) {
	f := newEnrollFixture(t, false, 1000)
	adminInv := identity.OpenInvites(filepath.Join(t.TempDir(), "inv.json"), f.tm.ca.Trust)
	tok, err := adminInv.New(time.Hour, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v2/join", "/v2/ticket"} {
		method, body := http.MethodPost, f.joinBody(newIdentity(t), "x", tok)
		if path == "/v2/ticket" {
			method, body = http.MethodGet, nil
		}
		status, er := f.post(method, path, body)
		if status != http.StatusMisdirectedRequest || er.Code != CodeNoCA {
			t.Fatalf("%s: %d %+v", path, status, er)
		}
		if er.Admin != nil || strings.Contains(er.Error, "admin") || strings.Contains(er.Error, "203.0.113.9") {
			t.Errorf("%s: the refusal names an admin: %+v", path, er)
		}
	}
}

// Issue 14 finding 6: join and hello took loopback, link-local and other
// internal endpoints into the member table, for every member to dial.
func TestJoinAndHelloRefuseInternalEndpoints(t *testing.T) {
	inward := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:51820")}
	linkLocal := []netip.AddrPort{netip.MustParseAddrPort("169.254.169.254:80")}
	for _, lab := range []bool{false, true} {
		f := newEnrollFixtureWith(t, true, 1000, func(c *ServerConfig) { c.Mesh.LabEndpoints = lab })
		now := time.Now()
		_, joinErr := Join(context.Background(), f.addr, f.token(time.Hour, 0, now), newIdentity(t), "inward", inward)
		back := f.tm.enroll("back", 0)
		_, helloErr := Hello(context.Background(), f.addr, back, linkLocal)
		for what, err := range map[string]error{"join": joinErr, "hello": helloErr} {
			var ee *Error
			switch {
			case lab && err != nil:
				t.Errorf("lab mesh: %s with an internal endpoint: %v", what, err)
			case !lab && (!errors.As(err, &ee) || ee.Code != CodeMalformed || !strings.Contains(ee.Message, "must not be told to dial")):
				t.Errorf("%s with an internal endpoint: %v, want %s", what, err, CodeMalformed)
			}
		}
		if _, ok := stateOf(f.d, "inward"); ok != lab {
			t.Errorf("lab %v: member with a loopback endpoint in the table: %v", lab, ok)
		}
	}
}
