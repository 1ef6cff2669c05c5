package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/discovery/enroll"
	"github.com/meshnode/meshnode/identity"
)

func TestJoinErrorKinds(t *testing.T) {
	refusal := func(status int, code string) error {
		return &enroll.Error{Peer: "192.0.2.1:51821", Status: status, Code: code, Message: "no"}
	}
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, c := range []struct {
		name      string
		err       error
		kind      error
		retryable bool
	}{
		{"token unknown", refusal(403, enroll.CodeTokenUnknown), ErrTokenUnknown, false},
		{"token expired", refusal(410, enroll.CodeTokenExpired), ErrTokenExpired, false},
		{"token used", refusal(410, enroll.CodeTokenUsed), ErrTokenUsed, false},
		{"token of another mesh", refusal(403, enroll.CodeTokenMesh), ErrWrongCA, false},
		{"name taken", refusal(409, enroll.CodeNameTaken), ErrNameTaken, false},
		{"key taken", refusal(409, enroll.CodeKeyTaken), ErrKeyTaken, false},
		{"bad WireGuard proof", refusal(400, enroll.CodeBadProof), ErrRefused, false},
		{"join v1", refusal(400, enroll.CodeVersion), ErrRefused, false},
		{"revoked", refusal(403, enroll.CodeRevoked), ErrRevoked, false},
		{"no CA", refusal(421, enroll.CodeNoCA), ErrNotAdmin, false},
		{"malformed", refusal(400, enroll.CodeMalformed), ErrRefused, false},
		{"bad signature", refusal(400, enroll.CodeBadSignature), ErrRefused, false},
		{"too large", refusal(413, enroll.CodeTooLarge), ErrRefused, false},
		{"rate limited", refusal(429, enroll.CodeRateLimited), ErrRateLimited, true},
		{"unavailable", refusal(503, enroll.CodeUnavailable), ErrUnavailable, true},
		{"internal", refusal(500, enroll.CodeInternalError), ErrUnavailable, true},
		{"unknown code, 4xx", refusal(418, "teapot"), ErrRefused, false},
		{"no code, 429", refusal(429, ""), ErrRateLimited, true},
		{"no code, 502", refusal(502, ""), ErrUnavailable, true},
		{"connection refused", &enroll.Error{Peer: "192.0.2.1:51821", Err: dial}, ErrUnreachable, true},
		{"timeout", &enroll.Error{Peer: "192.0.2.1:51821", Err: context.DeadlineExceeded}, ErrUnreachable, true},
		{"pinned CA mismatch", &enroll.Error{Peer: "192.0.2.1:51821", Err: enroll.ErrWrongCA}, ErrWrongCA, false},
		{"CA mismatch in the answer", fmt.Errorf("enrollment from x: %w", enroll.ErrWrongCA), ErrWrongCA, false},
		{"answer does not verify", errors.New("enrollment from x: no route secret"), nil, false},
	} {
		if got := joinErrorKind(c.err); got != c.kind {
			t.Errorf("%s: kind %v, want %v", c.name, got, c.kind)
		}
		err := error(&joinError{kind: joinErrorKind(c.err), peer: "192.0.2.1:51821", err: c.err})
		if c.kind != nil && !errors.Is(err, c.kind) {
			t.Errorf("%s: %v is not %v", c.name, err, c.kind)
		}
		if !errors.Is(err, c.err) {
			t.Errorf("%s: the detail is not wrapped", c.name)
		}
		if Retryable(err) != c.retryable {
			t.Errorf("%s: Retryable = %v, want %v", c.name, !c.retryable, c.retryable)
		}
		if !strings.HasPrefix(err.Error(), "join via 192.0.2.1:51821: ") {
			t.Errorf("%s: %q does not name the peer first", c.name, err)
		}
	}

	used := &joinError{kind: ErrTokenUsed, peer: "10.0.0.1:51821",
		err: &enroll.Error{Peer: "10.0.0.1:51821", Status: 410, Code: enroll.CodeTokenUsed, Message: "join token was already used"}}
	if got, want := used.Error(), "join via 10.0.0.1:51821: token already used: join token was already used (410 token-used)"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	refused := &joinError{kind: ErrUnreachable, peer: "10.0.0.1:51821", err: &enroll.Error{Peer: "10.0.0.1:51821", Err: dial}}
	if got := refused.Error(); !strings.HasPrefix(got, "join via 10.0.0.1:51821: unreachable: dial tcp") {
		t.Errorf("unreachable message %q", got)
	}
}

// joinFixture is an admin member's enrollment endpoint on loopback, with
// a member table that never gossips: what mesh.Join talks to.
type joinFixture struct {
	addr string
	inv  *identity.Invites
}

func newJoinFixture(t *testing.T) *joinFixture {
	t.Helper()
	now := time.Now()
	ca, err := identity.NewCA("testmesh", now)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := identity.NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	id := identity.FromSeed(seed)
	e, err := ca.Enroll("admin", id.Public(), id.WireGuardPublic(), identity.RoleAdmin, now)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := identity.ParseTicket(e.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := identity.ParseNodeCert(e.NodeCertPEM, ca.Trust, now)
	if err != nil {
		t.Fatal(err)
	}
	m := &identity.Member{ID: id, Trust: ca.Trust, Ticket: tk, Cert: nc, CA: ca, RouteSecret: "0123456789abcdef0123456789abcdef"}
	revs := identity.NewRevocationSet(ca.Trust)
	d, err := discovery.New(discovery.Config{Member: m, Revocations: revs,
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:51820")}})
	if err != nil {
		t.Fatal(err)
	}
	f := &joinFixture{inv: identity.OpenInvites(filepath.Join(t.TempDir(), "invites.json"), ca.Trust)}
	srv, err := enroll.NewServer(enroll.ServerConfig{
		Member: m, Invites: f.inv, Members: d, Revocations: revs,
		Mesh: enroll.MeshParams{GossipPort: 7999, BootstrapExpect: 2, MaxCore: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *joinFixture) token(t *testing.T) string {
	tok, err := f.inv.New(time.Hour, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func joinConfig(t *testing.T) Config {
	return Config{StateDir: identity.StateDir(filepath.Join(t.TempDir(), "state")), Endpoints: []string{"198.51.100.20:51820"}}
}

// stateEmpty fails unless a refused join left dir as it was (absent).
// stateEmpty checks that a failed join left nothing but the seed, which
// the joiner keeps from before it asks (so that a retry is the same
// identity) and reuses on the next join.
func stateEmpty(t *testing.T, cfg Config) {
	t.Helper()
	entries, err := os.ReadDir(string(cfg.StateDir))
	if os.IsNotExist(err) {
		return
	}
	for _, e := range entries {
		if e.Name() != "identity.seed" {
			t.Fatalf("a refused join wrote %s into the state directory (%v)", e.Name(), entries)
		}
	}
}

func TestJoinStoresMembership(t *testing.T) {
	f := newJoinFixture(t)
	cfg := joinConfig(t)
	res, err := Join(context.Background(), cfg, JoinRequest{Peer: f.addr, Token: f.token(t), Name: "newbie"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mesh != "testmesh" || res.Name != "newbie" || res.Members != 1 || !res.Addr.IsValid() {
		t.Fatalf("result %+v", res)
	}
	// The mesh's gossip port and bootstrap_expect are adopted and saved.
	if res.Config.GossipPort != 7999 || res.Config.BootstrapExpect != 2 || res.Config.MaxCore != 3 {
		t.Fatalf("adopted gossip port %d, bootstrap_expect %d, max_core %d", res.Config.GossipPort, res.Config.BootstrapExpect, res.Config.MaxCore)
	}
	saved, err := LoadConfig(cfg.StateDir)
	if err != nil || saved.GossipPort != 7999 || saved.BootstrapExpect != 2 || saved.MaxCore != 3 {
		t.Fatalf("saved config %+v: %v", saved, err)
	}
	// The state directory is a member's: the node loads from it.
	n, err := New(res.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Name() != "newbie" || n.Addr() != res.Addr {
		t.Fatalf("loaded %s %s", n.Name(), n.Addr())
	}
	if _, err := os.Stat(cfg.StateDir.MembersPath()); err != nil {
		t.Fatalf("member table not written: %v", err)
	}

	// A second join into the same directory is refused before any
	// network traffic.
	_, err = Join(context.Background(), cfg, JoinRequest{Peer: "192.0.2.1", Token: f.token(t), Name: "again"})
	if !errors.Is(err, ErrAlreadyEnrolled) || Retryable(err) || !strings.Contains(err.Error(), "already enrolled") {
		t.Fatalf("join into an enrolled directory: %v", err)
	}

	// An operator's bootstrap_expect stays.
	cfg2 := joinConfig(t)
	cfg2.BootstrapExpect = 5
	res2, err := Join(context.Background(), cfg2, JoinRequest{Peer: f.addr, Token: f.token(t), Name: "chosen", KeepBootstrapExpect: true})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Config.BootstrapExpect != 5 || res2.Config.GossipPort != 7999 {
		t.Fatalf("kept bootstrap_expect %d, gossip port %d", res2.Config.BootstrapExpect, res2.Config.GossipPort)
	}
}

func TestJoinTokenUsed(t *testing.T) {
	f := newJoinFixture(t)
	tok := f.token(t)
	if _, err := Join(context.Background(), joinConfig(t), JoinRequest{Peer: f.addr, Token: tok, Name: "first"}); err != nil {
		t.Fatal(err)
	}
	cfg := joinConfig(t)
	_, err := Join(context.Background(), cfg, JoinRequest{Peer: f.addr, Token: tok, Name: "second"})
	if !errors.Is(err, ErrTokenUsed) || Retryable(err) {
		t.Fatalf("reused token: got %v, want ErrTokenUsed, final", err)
	}
	var ee *enroll.Error
	if !errors.As(err, &ee) || ee.Code != enroll.CodeTokenUsed {
		t.Fatalf("the peer's refusal is not wrapped: %v", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "join via "+f.addr+": token already used: ") {
		t.Fatalf("message %q", msg)
	}
	stateEmpty(t, cfg)
}

func TestJoinTokenInvalid(t *testing.T) {
	cfg := joinConfig(t)
	_, err := Join(context.Background(), cfg, JoinRequest{Peer: "192.0.2.1", Token: "mnj1-x", Name: "b"})
	if !errors.Is(err, ErrTokenInvalid) || !errors.Is(err, identity.ErrTokenMalformed) || Retryable(err) ||
		!strings.HasPrefix(err.Error(), "join token is malformed") {
		t.Fatalf("malformed token: %v", err)
	}
	stateEmpty(t, cfg)
}

func TestJoinUnreachable(t *testing.T) {
	// Nothing listens: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	// Something listens and never answers: the exchange times out.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	defer func(d time.Duration) { joinTimeout = d }(joinTimeout)
	joinTimeout = 300 * time.Millisecond

	tok := identity.Invite{Secret: [32]byte{1}}.String()
	for _, peer := range []string{closed, silent.Addr().String()} {
		cfg := joinConfig(t)
		_, err := Join(context.Background(), cfg, JoinRequest{Peer: peer, Token: tok, Name: "b"})
		if !errors.Is(err, ErrUnreachable) || !Retryable(err) {
			t.Fatalf("%s: got %v, want ErrUnreachable, retryable", peer, err)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "join via "+peer+": unreachable: ") || strings.Contains(msg, "refused (") {
			t.Fatalf("%s: message %q", peer, msg)
		}
		stateEmpty(t, cfg)
	}

	// The caller giving up is not the peer's failure.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Join(ctx, joinConfig(t), JoinRequest{Peer: silent.Addr().String(), Token: tok, Name: "b"})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) {
		t.Fatalf("cancelled join: %v", err)
	}
}

func TestWithDefaultPort(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":      "192.0.2.1:51821",
		"192.0.2.1:9000": "192.0.2.1:9000",
		"2001:db8::1":    "[2001:db8::1]:51821",
		"[2001:db8::1]":  "[2001:db8::1]:51821",
		"hq.example":     "hq.example:51821",
	} {
		if got := withDefaultPort(in, 51821); got != want {
			t.Errorf("withDefaultPort(%q) = %q, want %q", in, got, want)
		}
	}
}

// answerDropper is a TCP proxy in front of an enrollment endpoint that
// relays both ways until answered() says the endpoint has acted on the
// request; the next bytes from the endpoint (its answer) are dropped and
// the client's connection is reset. That is a join whose answer was lost
// after the admitting node admitted it.
type answerDropper struct {
	ln       net.Listener
	target   string
	answered func() bool
	drops    atomic.Int32 // connections still to cut
}

func newAnswerDropper(t *testing.T, target string, answered func() bool) *answerDropper {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &answerDropper{ln: ln, target: target, answered: answered}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

// serve relays one connection; the first answer bytes that arrive after
// answered() holds are swallowed and the client reset, drops times in all
// (whatever connection they come on: the client may open one for the
// admitting node's ticket before the join).
func (p *answerDropper) serve(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() }()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if p.answered() && p.drops.Add(-1) >= 0 {
				c.(*net.TCPConn).SetLinger(0) // a reset, not a clean close
				return
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestJoinAnswerLost: the admitting node admits the newcomer and redeems
// its token, but the answer never arrives (the connection is reset). The
// join fails as retryable, keeps its seed, and the retry with the same
// token gets the same admission instead of "token used"; a second
// identity with that token is still refused.
func TestJoinAnswerLost(t *testing.T) {
	f := newJoinFixture(t)
	tok := f.token(t)
	redeemed := func() bool {
		_, err := f.inv.Check(tok, time.Now())
		return errors.Is(err, identity.ErrTokenUsed)
	}
	proxy := newAnswerDropper(t, f.addr, redeemed)
	proxy.drops.Store(1)
	cfg := joinConfig(t)
	req := JoinRequest{Peer: proxy.ln.Addr().String(), Token: tok, Name: "newbie"}
	_, err := Join(context.Background(), cfg, req)
	if !errors.Is(err, ErrUnreachable) || !Retryable(err) {
		t.Fatalf("lost answer: got %v, want ErrUnreachable, retryable", err)
	}
	if !redeemed() {
		t.Fatal("the endpoint did not redeem the token: the answer was not lost after the admission")
	}
	stateEmpty(t, cfg) // nothing but the seed
	seed, err := identity.LoadSeed(cfg.StateDir.SeedPath())
	if err != nil {
		t.Fatalf("the seed was not kept across the lost answer: %v", err)
	}

	res, err := Join(context.Background(), cfg, req)
	if err != nil {
		t.Fatalf("retry with the same token and identity: %v", err)
	}
	m, err := cfg.StateDir.LoadMember(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if m.ID.Public() != identity.FromSeed(seed).Public() || res.Name != "newbie" {
		t.Fatalf("retry enrolled %s as %q, want the kept identity as newbie", m.ID.Public().ShortString(), res.Name)
	}

	// Another identity with the spent token: refused as before.
	other := joinConfig(t)
	if _, err := Join(context.Background(), other, JoinRequest{Peer: f.addr, Token: tok, Name: "newbie"}); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("another identity with the used token: %v, want ErrTokenUsed", err)
	}
}
