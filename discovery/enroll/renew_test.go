package enroll

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// TestRenewEndpoint: a member renews with its current ticket, also an
// expired one within RenewGrace; the admin issues the same name, keys and
// roles with the mesh's member validity and re-adds the member. Too late,
// revoked, foreign signatures and non-admins are refused.
func TestRenewEndpoint(t *testing.T) {
	f := newEnrollFixture(t, true, 1000)
	back := f.tm.enroll("back", identity.RoleHub)
	eps := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.40:51820")}
	ctx := context.Background()

	r, err := Renew(ctx, f.addr, back, eps)
	if err != nil {
		t.Fatal(err)
	}
	nt, err := identity.ParseTicket(r.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if nt.Name != "back" || nt.Node != back.ID.Public() || nt.WireGuard != back.ID.WireGuardPublic() || nt.Roles != identity.RoleHub {
		t.Fatalf("renewed ticket %+v differs from the member's", nt)
	}
	if got := nt.NotAfter.Sub(time.Now()); got < 9*time.Minute || got > 10*time.Minute+time.Second {
		t.Fatalf("renewed ticket valid for %s, want the mesh's 10m", got)
	}
	if r.Mesh.MemberValidity() != 10*time.Minute || len(r.Members) == 0 {
		t.Fatalf("renewal answer: mesh %+v, %d members", r.Mesh, len(r.Members))
	}
	if f.admittedCount() != 1 || f.admitted[0].Endpoints[0] != eps[0] {
		t.Fatalf("renewed member not re-added with its endpoints: %+v", f.admitted)
	}

	// Expired within the grace period (one lifetime): renewed.
	exp := *back
	exp.Ticket, err = f.tm.ca.IssueTicket("back", back.ID.Public(), back.ID.WireGuardPublic(), identity.RoleHub, time.Now().Add(-90*time.Second), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Renew(ctx, f.addr, &exp, eps); err != nil {
		t.Fatalf("expired 30s ago, lifetime 2m: %v", err)
	}
	// Expired longer ago than its lifetime: a new token is needed.
	exp.Ticket, err = f.tm.ca.IssueTicket("back", back.ID.Public(), back.ID.WireGuardPublic(), 0, time.Now().Add(-10*time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var ee *Error
	if _, err := Renew(ctx, f.addr, &exp, eps); !errors.As(err, &ee) || ee.Code != CodeRenewTooLate || ee.Status != http.StatusForbidden {
		t.Fatalf("expired beyond grace: %v", err)
	}

	// A ticket of another CA, and someone else's ticket with our signature.
	foreign := newTestMesh(t).enroll("back", 0)
	foreign.Trust = back.Trust
	if _, err := Renew(ctx, f.addr, foreign, nil); !errors.As(err, &ee) || ee.Code != CodeBadTicket {
		t.Fatalf("foreign ticket: %v", err)
	}
	thief := *f.tm.enroll("thief", 0)
	thief.Ticket = back.Ticket
	if _, err := Renew(ctx, f.addr, &thief, nil); !errors.As(err, &ee) || ee.Code != CodeBadSignature {
		t.Fatalf("stolen ticket: %v", err)
	}

	// A replayed renew request (used challenge) is refused.
	c := newClient(f.addr, verifyAgainst(f.tm.ca.Pool()))
	var ch challengeResponse
	if err := c.do(ctx, http.MethodGet, "/v1/challenge", nil, &ch); err != nil {
		t.Fatal(err)
	}
	req := renewRequest{Version: 1, Ticket: back.Ticket.Marshal(), Challenge: ch.Challenge}
	req.Signature = back.ID.Sign(req.signed())
	body, _ := json.Marshal(req)
	if status, er := f.post(http.MethodPost, "/v1/renew", body); status != 200 {
		t.Fatalf("first use: %d %+v", status, er)
	}
	if status, er := f.post(http.MethodPost, "/v1/renew", body); status != 403 || er.Code != CodeBadChallenge {
		t.Fatalf("replayed: %d %+v", status, er)
	}
	// A hello signature is no renew signature (and the reverse).
	if err := c.do(ctx, http.MethodGet, "/v1/challenge", nil, &ch); err != nil {
		t.Fatal(err)
	}
	hr := helloRequest{Version: 1, Ticket: back.Ticket.Marshal(), Challenge: ch.Challenge}
	req = renewRequest{Version: 1, Ticket: hr.Ticket, Challenge: ch.Challenge, Signature: back.ID.Sign(hr.signed())}
	body, _ = json.Marshal(req)
	if status, er := f.post(http.MethodPost, "/v1/renew", body); status != 400 || er.Code != CodeBadSignature {
		t.Fatalf("hello signature on renew: %d %+v", status, er)
	}

	// Revoked: refused.
	rev, _ := f.tm.ca.Revoke(back.ID.Public(), "gone", time.Now())
	if err := f.d.Revoke(rev); err != nil {
		t.Fatal(err)
	}
	if _, err := Renew(ctx, f.addr, back, nil); !errors.As(err, &ee) || ee.Code != CodeRevoked {
		t.Fatalf("revoked member: %v", err)
	}

	// A member without the CA refuses, and names no admin: the caller
	// is not authenticated when it is told (issue 14, finding 6).
	p := newEnrollFixture(t, false, 1000)
	if _, err := Renew(ctx, p.addr, p.tm.enroll("x", 0), nil); !errors.As(err, &ee) || ee.Code != CodeNoCA || ee.Admin != "" {
		t.Fatalf("renew at a plain member: %v, want %s naming no admin", err, CodeNoCA)
	}
}

// TestJoinAnswerLostHook: the endpoint admits and redeems, then the
// connection dies before the answer is out; the same identity's retry with
// the same token is admitted again.
func TestJoinAnswerLostHook(t *testing.T) {
	f := newEnrollFixture(t, true, 1000)
	var lost atomic.Bool
	f.srv.cfg.answered = func(path string, w http.ResponseWriter) {
		if path == "/v2/join" && lost.CompareAndSwap(false, true) {
			panic(http.ErrAbortHandler) // net/http closes the connection unflushed
		}
	}
	tok := f.token(time.Hour, 0, time.Now())
	id := newIdentity(t)
	var ee *Error
	if _, err := Join(context.Background(), f.addr, tok, id, "lost", nil); !errors.As(err, &ee) || ee.Status != 0 {
		t.Fatalf("lost answer: %v, want no answer (status 0)", err)
	}
	if _, err := f.inv.Check(tok, time.Now()); !errors.Is(err, identity.ErrTokenUsed) {
		t.Fatalf("token not redeemed before the answer was lost: %v", err)
	}
	if _, err := Join(context.Background(), f.addr, tok, id, "lost", nil); err != nil {
		t.Fatalf("retry after the lost answer: %v", err)
	}
}

// TestRenewSignedGolden freezes the bytes a renew signature covers.
func TestRenewSignedGolden(t *testing.T) {
	ch := make([]byte, 32)
	for i := range ch {
		ch[i] = byte(i)
	}
	r := renewRequest{Ticket: []byte{0xaa, 0xbb}, Challenge: ch,
		Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:51820")}}
	want := hex.EncodeToString([]byte("meshnode renew v1")) +
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" + // challenge
		"02" + "aabb" + // ticket_len, ticket
		"01" + "00000000000000000000ffffc0000201" + "ca6c" // 1 endpoint: ::ffff:192.0.2.1 port 51820
	if got := hex.EncodeToString(r.signed()); got != want {
		t.Fatalf("renew signed bytes\n got %s\nwant %s", got, want)
	}
}
