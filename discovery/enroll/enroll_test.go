package enroll

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
)

type enrollFixture struct {
	t     *testing.T
	tm    *testMesh
	self  *identity.Member
	d     *discovery.Discovery
	inv   *identity.Invites
	srv   *Server
	addr  string
	clock time.Time

	revs *identity.RevocationSet

	mu       sync.Mutex
	admitted []discovery.Member
}

// newEnrollFixture runs an enrollment endpoint on loopback for a member
// holding the CA (withCA) or a plain member that knows an admin.
func newEnrollFixture(t *testing.T, withCA bool, maxFailures int) *enrollFixture {
	return newEnrollFixtureWith(t, withCA, maxFailures, nil)
}

// newEnrollFixtureWith is newEnrollFixture with a last say over the
// endpoint's configuration.
func newEnrollFixtureWith(t *testing.T, withCA bool, maxFailures int, configure func(*ServerConfig)) *enrollFixture {
	return newEnrollFixtureAs(t, withCA, maxFailures, identity.RoleAdmin, configure)
}

// newEnrollFixtureAs is newEnrollFixtureWith with the admin's roles.
func newEnrollFixtureAs(t *testing.T, withCA bool, maxFailures int, adminRoles identity.Roles, configure func(*ServerConfig)) *enrollFixture {
	tm := newTestMesh(t)
	f := &enrollFixture{t: t, tm: tm, clock: time.Now()}
	admin := tm.enroll("admin", adminRoles)
	admin.CA = tm.ca
	self := admin
	if !withCA {
		self = tm.enroll("plain", 0)
	}
	f.self = self
	revs := identity.NewRevocationSet(self.Trust)
	f.revs = revs
	d, err := discovery.New(tm.discoveryConfig(t, self, revs, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	if !withCA {
		d.Admit(admin.Ticket, []netip.AddrPort{netip.MustParseAddrPort("203.0.113.9:51820")})
	}
	cfg := ServerConfig{
		Member:      self,
		Members:     d,
		Revocations: revs,
		Mesh:        MeshParams{GossipPort: 7999, BootstrapExpect: 3, MemberValiditySeconds: 600},
		OnAdmit:     func(m discovery.Member) { f.mu.Lock(); f.admitted = append(f.admitted, m); f.mu.Unlock() },
		Logger:      testLogger(t, "enroll"),
		MaxFailures: maxFailures,
		now:         func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.clock },
	}
	if withCA {
		f.inv = identity.OpenInvites(filepath.Join(t.TempDir(), "invites.json"), tm.ca.Trust)
		cfg.Invites = f.inv
	}
	if configure != nil {
		configure(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.srv, f.addr = srv, ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *enrollFixture) token(ttl time.Duration, roles identity.Roles, now time.Time) string {
	tok, err := f.inv.New(ttl, roles, now)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func (f *enrollFixture) admittedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.admitted)
}

// signedJoinBody is a well-formed, correctly signed join request proving
// its WireGuard key toward the admitting node's key admin.
func signedJoinBody(t testing.TB, id *identity.Identity, name, token string, admin identity.WireGuardPublic) []byte {
	req := joinRequest{Version: joinVersion, Name: name, Node: id.Public(), WireGuard: id.WireGuardPublic(),
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.20:51820")}, Token: token}
	req.Signature = id.Sign(req.signed())
	var err error
	if req.WireGuardProof, err = id.WireGuardProof(admin, joinProofDomain, req.signed()); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// joinBody is signedJoinBody toward the fixture's endpoint.
func (f *enrollFixture) joinBody(id *identity.Identity, name, token string) []byte {
	return signedJoinBody(f.t, id, name, token, f.self.ID.WireGuardPublic())
}

// post sends raw bytes over the pinned TLS connection and returns the
// status and error code.
func (f *enrollFixture) post(method, path string, body []byte) (int, errorResponse) {
	f.t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, VerifyConnection: pinnedCA(f.tm.ca.Fingerprint()),
	}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(method, "https://"+f.addr+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var er errorResponse
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &er)
	return resp.StatusCode, er
}

func TestEnrollHappyPath(t *testing.T) {
	f := newEnrollFixture(t, true, 0)
	tok := f.token(time.Hour, identity.RoleHub, time.Now())
	id := newIdentity(t)
	eps := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.20:51820")}
	res, err := Join(context.Background(), f.addr, tok, id, "newbie", eps)
	if err != nil {
		t.Fatal(err)
	}
	// The enrollment verifies and can be stored as a node's state.
	dir := identity.StateDir(t.TempDir())
	m, err := dir.SaveEnrollment(id, res.Enrollment, time.Now())
	if err != nil {
		t.Fatalf("enrollment does not verify: %v", err)
	}
	if m.Ticket.Name != "newbie" || m.Ticket.Roles != identity.RoleHub || m.Cert.Node() != id.Public() || m.RouteSecret != f.self.RouteSecret {
		t.Fatalf("wrong enrollment: ticket %+v", m.Ticket)
	}
	// The mesh's name and prefix come with the CA certificate, the rest
	// with the mesh params.
	if m.Trust.Mesh != "testmesh" || m.Trust.Prefix() != f.tm.ca.Prefix() || res.Mesh.GossipPort != 7999 || res.Mesh.BootstrapExpect != 3 {
		t.Fatalf("mesh %q %v, params %+v", m.Trust.Mesh, m.Trust.Prefix(), res.Mesh)
	}
	// It knows the admitting member, verified, with its signed endpoints
	// (NATS ports come only from signed meta: the record carried it).
	if len(res.Members) != 1 || res.Members[0].Name != "admin" || res.Members[0].NATSClientPort != 4222 ||
		res.Members[0].Endpoints[0] != netip.MustParseAddrPort("192.0.2.1:51820") {
		t.Fatalf("member list %+v", res.Members)
	}
	// Persisted, the list is re-verified and loaded by a newcomer's
	// discovery before any gossip.
	dir2 := t.TempDir()
	if err := discovery.WriteMembers(filepath.Join(dir2, "members.json"), res.Members); err != nil {
		t.Fatal(err)
	}
	nd, err := discovery.New(f.tm.discoveryConfig(t, m, identity.NewRevocationSet(m.Trust), dir2))
	if err != nil {
		t.Fatal(err)
	}
	if back := nd.Known(); len(back) != 1 || back[0].Name != "admin" {
		t.Fatalf("persisted member list: %+v", back)
	}
	// The admitting node was told before it answered, and lists the
	// newcomer with the endpoints it signed.
	if f.admittedCount() != 1 || f.admitted[0].WireGuard != id.WireGuardPublic() || f.admitted[0].Endpoints[0] != eps[0] {
		t.Fatalf("OnAdmit got %+v", f.admitted)
	}
	if st, ok := stateOf(f.d, "newbie"); !ok || st != discovery.StateUnknown {
		t.Fatalf("newcomer in the admitting table: %v %v", st, ok)
	}
	// The same identity asking again under the same name (it lost the
	// answer) gets the same admission; anyone else finds the token used.
	again, err := Join(context.Background(), f.addr, tok, id, "newbie", eps)
	if err != nil {
		t.Fatalf("same identity, same token again: %v", err)
	}
	if at, _ := identity.ParseTicket(again.Enrollment.Ticket); at == nil || at.Name != "newbie" || at.Node != id.Public() || at.Roles != identity.RoleHub {
		t.Fatalf("second admission differs: %+v", at)
	}
	var ee *Error
	for _, tc := range []struct {
		id   *identity.Identity
		name string
	}{{newIdentity(t), "newbie"}, {newIdentity(t), "other"}, {id, "renamed"}} {
		_, err = Join(context.Background(), f.addr, tok, tc.id, tc.name, eps)
		if !errors.As(err, &ee) || ee.Status != http.StatusGone || ee.Code != CodeTokenUsed {
			t.Fatalf("used token, %s as %q: %v", tc.id.Public().ShortString(), tc.name, err)
		}
	}
}

func TestEnrollRefusals(t *testing.T) {
	f := newEnrollFixture(t, true, 1000)
	now := time.Now()
	other := newTestMesh(t)
	otherInv := identity.OpenInvites(filepath.Join(t.TempDir(), "other.json"), other.ca.Trust)
	foreignTok, err := otherInv.New(time.Hour, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	unknownTok := identity.Invite{CAFingerprint: f.tm.ca.Fingerprint(), Secret: [32]byte{7}}.String()
	expiredTok := f.token(time.Minute, 0, now.Add(-time.Hour))
	usedTok := f.token(time.Hour, 0, now)
	if _, err := Join(context.Background(), f.addr, usedTok, newIdentity(t), "first", nil); err != nil {
		t.Fatal(err)
	}
	revokedID := newIdentity(t)
	rev, err := f.tm.ca.Revoke(revokedID.Public(), "lost", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.d.Revoke(rev); err != nil {
		t.Fatal(err)
	}
	wrongSigner := newIdentity(t)
	badSig := func() []byte {
		id := newIdentity(t)
		req := joinRequest{Version: joinVersion, Name: "sneaky", Node: id.Public(), WireGuard: id.WireGuardPublic(), Token: f.token(time.Hour, 0, now)}
		req.Signature = wrongSigner.Sign(req.signed())
		req.WireGuardProof, _ = id.WireGuardProof(f.self.ID.WireGuardPublic(), joinProofDomain, req.signed())
		b, _ := json.Marshal(req)
		return b
	}()
	big := []byte(`{"version":1,"name":"` + strings.Repeat("a", maxRequestBody) + `"}`)

	cases := []struct {
		name   string
		body   []byte
		status int
		code   string
	}{
		{"malformed JSON", []byte(`{"version":1,`), 400, CodeMalformed},
		{"unknown field", []byte(`{"version":1,"admin":true}`), 400, CodeMalformed},
		{"two objects", append(f.joinBody(newIdentity(t), "x", unknownTok), "{}"...), 400, CodeMalformed},
		{"bad name", f.joinBody(newIdentity(t), "Not_A_Label", unknownTok), 400, CodeMalformed},
		{"oversized body", big, 413, CodeTooLarge},
		{"bad signature", badSig, 400, CodeBadSignature},
		{"malformed token", f.joinBody(newIdentity(t), "x", "mnj1-zzzz"), 400, CodeMalformed},
		{"unknown token", f.joinBody(newIdentity(t), "x", unknownTok), 403, CodeTokenUnknown},
		{"expired token", f.joinBody(newIdentity(t), "x", expiredTok), 410, CodeTokenExpired},
		{"reused token", f.joinBody(newIdentity(t), "x", usedTok), 410, CodeTokenUsed},
		{"token of another mesh", f.joinBody(newIdentity(t), "x", foreignTok), 403, CodeTokenMesh},
	}
	fresh := f.token(time.Hour, 0, now) // valid for the checks that need one
	cases = append(cases, []struct {
		name   string
		body   []byte
		status int
		code   string
	}{
		{"name taken", f.joinBody(newIdentity(t), "admin", fresh), 409, CodeNameTaken},
		{"name taken by earlier newcomer", f.joinBody(newIdentity(t), "first", fresh), 409, CodeNameTaken},
		{"revoked identity", f.joinBody(revokedID, "x", fresh), 403, CodeRevoked},
	}...)

	before := len(f.d.Members())
	admittedBefore := f.admittedCount()
	for _, c := range cases {
		status, er := f.post(http.MethodPost, "/v2/join", c.body)
		if status != c.status || er.Code != c.code {
			t.Errorf("%s: got %d %q (%s), want %d %q", c.name, status, er.Code, er.Error, c.status, c.code)
		}
		if er.Error == "" {
			t.Errorf("%s: no error message", c.name)
		}
	}
	if status, er := f.post(http.MethodGet, "/v2/join", nil); status != 405 || er.Code != CodeMethod {
		t.Errorf("GET join: %d %q", status, er.Code)
	}
	if status, er := f.post(http.MethodGet, "/v3/join", nil); status != 404 || er.Code != CodeNotFound {
		t.Errorf("unknown path: %d %q", status, er.Code)
	}
	// Nothing changed: no member added, nobody admitted, the valid token
	// still works.
	if n := len(f.d.Members()); n != before || f.admittedCount() != admittedBefore {
		t.Fatalf("refusals changed the table (%d → %d members) or admitted someone", before, n)
	}
	if _, err := f.inv.Check(fresh, time.Now()); err != nil {
		t.Fatalf("a refused request used up the token: %v", err)
	}
	if _, err := Join(context.Background(), f.addr, fresh, newIdentity(t), "second", nil); err != nil {
		t.Fatalf("valid join after refusals: %v", err)
	}

	// Wrong CA from the joiner's side: the token pins another CA, so the
	// joiner refuses the server before sending anything.
	_, err = Join(context.Background(), f.addr, foreignTok, newIdentity(t), "x", nil)
	if !errors.Is(err, ErrWrongCA) {
		t.Fatalf("token of another mesh: want ErrWrongCA, got %v", err)
	}
}

// A member without the CA cannot admit, and says so at the first request
// of a join (the ticket a newcomer proves its WireGuard key toward).
func TestEnrollWithoutCA(t *testing.T) {
	f := newEnrollFixture(t, false, 0)
	adminInv := identity.OpenInvites(filepath.Join(t.TempDir(), "inv.json"), f.tm.ca.Trust)
	tok, err := adminInv.New(time.Hour, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Join(context.Background(), f.addr, tok, newIdentity(t), "x", nil)
	var ee *Error
	if !errors.As(err, &ee) || ee.Status != http.StatusMisdirectedRequest || ee.Code != CodeNoCA {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
}

func TestEnrollRateLimit(t *testing.T) {
	f := newEnrollFixture(t, true, 3)
	f.srv.lim.window = 30 * time.Second // the clock may not run past the certificates' NotBefore slack
	for range 3 {
		if status, _ := f.post(http.MethodPost, "/v2/join", []byte("{")); status != 400 {
			t.Fatalf("status %d", status)
		}
	}
	// A guess is answered 429 while the address is limited...
	spent := f.token(time.Hour, 0, time.Now())
	if _, err := f.srv.cfg.Invites.Redeem(spent, "spent", time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err := Join(context.Background(), f.addr, spent, newIdentity(t), "late", nil)
	var ee *Error
	if !errors.As(err, &ee) || ee.Status != http.StatusTooManyRequests || ee.Code != CodeRateLimited {
		t.Fatalf("a used token after 3 failures: %v, want 429 %s", err, CodeRateLimited)
	}
	// ...but a valid token is no guess: the limit is on failures, and the
	// honest joiner behind the same address gets in at once.
	tok := f.token(time.Hour, 0, time.Now())
	if _, err := Join(context.Background(), f.addr, tok, newIdentity(t), "late", nil); err != nil {
		t.Fatalf("a valid token from a limited address: %v", err)
	}
	// After the window the address is heard again: the used token gets
	// its real answer.
	f.mu.Lock()
	f.clock = f.clock.Add(45 * time.Second)
	f.mu.Unlock()
	if _, err := Join(context.Background(), f.addr, spent, newIdentity(t), "later", nil); !errors.As(err, &ee) || ee.Code != CodeTokenUsed {
		t.Fatalf("a used token after the window: %v, want %s", err, CodeTokenUsed)
	}
}

func TestHello(t *testing.T) {
	for _, withCA := range []bool{true, false} {
		f := newEnrollFixture(t, withCA, 1000)
		back := f.tm.enroll("back", 0)
		eps := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.30:51820")}
		members, err := Hello(context.Background(), f.addr, back, eps)
		if err != nil {
			t.Fatal(err)
		}
		if len(members) == 0 {
			t.Fatal("hello returned no members")
		}
		for _, m := range members {
			if m.Name == "back" {
				t.Fatal("hello answer lists the caller")
			}
		}
		if st, ok := stateOf(f.d, "back"); !ok || st != discovery.StateUnknown || f.admittedCount() != 1 || f.admitted[0].Endpoints[0] != eps[0] {
			t.Fatalf("withCA=%v: member not re-added (%v %v), admitted %+v", withCA, st, ok, f.admitted)
		}

		// A challenge works once.
		c := newClient(f.addr, verifyAgainst(f.tm.ca.Pool()))
		var ch challengeResponse
		if err := c.do(context.Background(), http.MethodGet, "/v1/challenge", nil, &ch); err != nil {
			t.Fatal(err)
		}
		req := helloRequest{Version: 1, Ticket: back.Ticket.Marshal(), Challenge: ch.Challenge}
		req.Signature = back.ID.Sign(req.signed())
		body, _ := json.Marshal(req)
		if status, er := f.post(http.MethodPost, "/v1/hello", body); status != 200 {
			t.Fatalf("first use: %d %+v", status, er)
		}
		if status, er := f.post(http.MethodPost, "/v1/hello", body); status != 403 || er.Code != CodeBadChallenge {
			t.Fatalf("replayed challenge: %d %+v", status, er)
		}

		// Someone else's ticket with our own signature.
		thief := f.tm.enroll("thief", 0)
		if err := c.do(context.Background(), http.MethodGet, "/v1/challenge", nil, &ch); err != nil {
			t.Fatal(err)
		}
		req = helloRequest{Version: 1, Ticket: back.Ticket.Marshal(), Challenge: ch.Challenge}
		req.Signature = thief.ID.Sign(req.signed())
		body, _ = json.Marshal(req)
		if status, er := f.post(http.MethodPost, "/v1/hello", body); status != 400 || er.Code != CodeBadSignature {
			t.Fatalf("stolen ticket: %d %+v", status, er)
		}

		// Expired ticket, revoked member.
		exp := *back
		exp.Ticket, err = f.tm.ca.IssueTicket("back", back.ID.Public(), back.ID.WireGuardPublic(), 0, time.Now().Add(-100*time.Hour), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		var ee *Error
		if _, err := Hello(context.Background(), f.addr, &exp, nil); !errors.As(err, &ee) || ee.Code != CodeBadTicket {
			t.Fatalf("expired ticket: %v", err)
		}
		rev, _ := f.tm.ca.Revoke(back.ID.Public(), "gone", time.Now())
		if err := f.d.Revoke(rev); err != nil {
			t.Fatal(err)
		}
		if _, err := Hello(context.Background(), f.addr, back, nil); !errors.As(err, &ee) || ee.Code != CodeRevoked {
			t.Fatalf("revoked member: %v", err)
		}
		if _, ok := stateOf(f.d, "back"); ok {
			t.Fatal("revoked member still in the table")
		}
	}
}

func FuzzDecodeEnrollRequest(f *testing.F) {
	id := identity.FromSeed(identity.Seed{1})
	tok := identity.Invite{Secret: [32]byte{2}}.String()
	f.Add(signedJoinBody(f, id, "node", tok, identity.FromSeed(identity.Seed{9}).WireGuardPublic()))
	hr := helloRequest{Version: 1, Ticket: []byte{1, 2}, Challenge: make([]byte, 32), Signature: make([]byte, 64)}
	hb, _ := json.Marshal(hr)
	f.Add(hb)
	f.Add([]byte(`{"version":1}`))
	rr := renewRequest{Version: 1, Ticket: []byte{1, 2}, Challenge: make([]byte, 32), Signature: make([]byte, 64)}
	rb, _ := json.Marshal(rr)
	f.Add(rb)
	gr := gossipKeyRequest{Version: 1, Ticket: []byte{1, 2}, Challenge: make([]byte, 32), Signature: make([]byte, 64)}
	gb, _ := json.Marshal(gr)
	f.Add(gb)
	f.Fuzz(func(t *testing.T, b []byte) {
		if req, tk, aerr := decodeGossipKeyRequest(b); aerr == nil {
			if len(req.Challenge) != challengeSize || len(req.Signature) != 64 || tk == nil || req.Version != version {
				t.Fatalf("accepted an invalid gossip key request: %+v", req)
			}
		} else if aerr.status < 400 || aerr.status > 499 || aerr.code == "" {
			t.Fatalf("gossip key refusal is not a precise 4xx: %+v", aerr)
		}
		if req, aerr := decodeJoinRequest(b); aerr == nil {
			if !req.Node.Verify(req.signed(), req.Signature) || discovery.CheckEndpoints(req.Endpoints) != nil || identity.ValidateName(req.Name) != nil ||
				req.Version != joinVersion || len(req.WireGuardProof) != identity.WireGuardProofSize {
				t.Fatalf("accepted an invalid join request: %+v", req)
			}
		} else if aerr.status < 400 || aerr.status > 499 || aerr.code == "" {
			t.Fatalf("refusal is not a precise 4xx: %+v", aerr)
		}
		if req, tk, aerr := decodeRenewRequest(b); aerr == nil {
			if len(req.Challenge) != challengeSize || len(req.Signature) != 64 || tk == nil || discovery.CheckEndpoints(req.Endpoints) != nil {
				t.Fatalf("accepted an invalid renew request: %+v", req)
			}
		} else if aerr.status < 400 || aerr.status > 499 || aerr.code == "" {
			t.Fatalf("renew refusal is not a precise 4xx: %+v", aerr)
		}
		if req, tk, aerr := decodeHelloRequest(b); aerr == nil {
			if len(req.Challenge) != challengeSize || tk == nil || discovery.CheckEndpoints(req.Endpoints) != nil {
				t.Fatalf("accepted an invalid hello request: %+v", req)
			}
		}
	})
}

// TestEnrollThenGossip is the whole path of a newcomer: enroll with a
// running admin, store the member list, start gossip with no Join call.
func TestEnrollThenGossip(t *testing.T) {
	tm := newTestMesh(t)
	adminM := tm.enroll("admin", identity.RoleAdmin)
	adminM.CA = tm.ca
	adminRevs := identity.NewRevocationSet(tm.ca.Trust)
	ad := tm.startGossip(t, adminM, adminRevs, t.TempDir())
	inv := identity.OpenInvites(filepath.Join(t.TempDir(), "invites.json"), tm.ca.Trust)
	var admitted []discovery.Member
	srv, err := NewServer(ServerConfig{Member: adminM, Invites: inv, Members: ad, Revocations: adminRevs, Logger: testLogger(t, "enroll"),
		OnAdmit: func(m discovery.Member) { admitted = append(admitted, m) }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	tok, err := inv.New(time.Hour, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	id := newIdentity(t)
	assignAddr(id.Public())
	res, err := Join(context.Background(), ln.Addr().String(), tok, id, "newbie", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(admitted) != 1 {
		t.Fatalf("OnAdmit called %d times", len(admitted))
	}
	dir := identity.StateDir(t.TempDir())
	m, err := dir.SaveEnrollment(id, res.Enrollment, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := discovery.WriteMembers(dir.MembersPath(), res.Members); err != nil {
		t.Fatal(err)
	}
	nd := tm.startGossip(t, m, identity.NewRevocationSet(m.Trust), string(dir))
	nodes := []*discovery.Discovery{ad, nd}
	waitFor(t, 30*time.Second, "newcomer and admin see each other alive", func() bool {
		for _, d := range nodes {
			for _, name := range []string{"admin", "newbie"} {
				if st, ok := stateOf(d, name); !ok || st != discovery.StateAlive {
					return false
				}
			}
		}
		return true
	})
	for _, d := range nodes {
		if r := d.Rejections(); len(r) != 0 {
			t.Fatalf("honest gossip refused: %v", r)
		}
	}
}

func TestPinnedCA(t *testing.T) {
	tm, other := newTestMesh(t), newTestMesh(t)
	leaf := tm.enroll("a", 0).Cert.Cert
	foreignLeaf := other.enroll("b", 0).Cert.Cert
	pin := pinnedCA(tm.ca.Fingerprint())
	state := func(certs ...*x509.Certificate) tls.ConnectionState {
		return tls.ConnectionState{PeerCertificates: certs}
	}
	if err := pin(state(leaf, tm.ca.Cert)); err != nil {
		t.Fatalf("genuine chain refused: %v", err)
	}
	for name, cs := range map[string]tls.ConnectionState{
		"no CA in chain":              state(leaf),
		"another CA":                  state(foreignLeaf, other.ca.Cert),
		"pinned CA, leaf of other CA": state(foreignLeaf, tm.ca.Cert),
	} {
		if err := pin(cs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPeerAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":          "192.0.2.1:51821",
		"192.0.2.1:9000":     "192.0.2.1:9000",
		"hub.example":        "hub.example:51821",
		"2001:db8::1":        "[2001:db8::1]:51821",
		"[2001:db8::1]":      "[2001:db8::1]:51821",
		"[2001:db8::1]:9000": "[2001:db8::1]:9000",
	} {
		if got := peerAddr(in); got != want {
			t.Errorf("peerAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAnswerFromEarlierBuild: a v1 answer still carrying the mesh params
// no client read (name, prefix, mtu) decodes as before.
func TestAnswerFromEarlierBuild(t *testing.T) {
	old := []byte(`{"ca_cert":"x","ticket":"AQI=","node_cert":"y","route_secret":"z",` +
		`"mesh":{"name":"acme","prefix":"fd00:1:2::/48","gossip_port":7946,"mtu":1420,"bootstrap_expect":3},"members":[]}`)
	var resp joinResponse
	if err := json.Unmarshal(old, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Mesh != (MeshParams{GossipPort: 7946, BootstrapExpect: 3}) || string(resp.Members) != "[]" {
		t.Fatalf("decoded %+v", resp)
	}
}
