package enroll

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/mesh/defaults"
)

// serve runs one request through the endpoint's handler from from
// ("ip:port"), as the TLS server would.
func serve(h http.Handler, method, path, from string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	r.RemoteAddr = from
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// guessBody is a join request with token as a guesser sends it: the token
// is wrong, so nothing else has to be right.
func guessBody(t *testing.T, token, name string) []byte {
	t.Helper()
	id := newIdentity(t)
	b, err := json.Marshal(joinRequest{Version: joinVersion, Token: token, Name: name, Node: id.Public(), WireGuard: id.WireGuardPublic()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWrongTokenFlood: 200 addresses × 10 wrong tokens, the review's
// flood. Before, all 2,000 were answered 403 (each address stayed under
// its own limit); now the endpoint-wide bucket answers most of them 429
// with the connection closed, and a good token still gets through from an
// address that took part in the flood.
func TestWrongTokenFlood(t *testing.T) {
	f := newEnrollFixture(t, true, defaults.EnrollMaxFailures)
	h := f.srv.Handler()
	wrong := f.token(time.Hour, 0, time.Now())
	if _, err := f.srv.cfg.Invites.Redeem(wrong, "spent", time.Now()); err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	closed := 0
	begin := time.Now()
	for a := range 200 {
		for range 10 {
			w := serve(h, http.MethodPost, "/v2/join", fmt.Sprintf("198.51.%d.%d:40000", a/250, a%250+1), guessBody(t, wrong, "flood"))
			codes[w.Code]++
			if w.Code == http.StatusTooManyRequests && w.Header().Get("Connection") == "close" {
				closed++
			}
		}
	}
	t.Logf("figure: 2,000 used-token joins from 200 addresses in %s: %d refused (4xx but 429), %d rate limited (429, %d closing the connection)",
		time.Since(begin).Round(time.Millisecond), 2000-codes[http.StatusTooManyRequests], codes[http.StatusTooManyRequests], closed)
	if codes[http.StatusTooManyRequests] < 1500 || closed != codes[http.StatusTooManyRequests] {
		t.Fatalf("answers %v (%d closing): want most of the flood rate limited, every 429 closing its connection", codes, closed)
	}
	// The endpoint-wide bucket is empty: a guess from anywhere is 429...
	if w := serve(h, http.MethodPost, "/v2/join", "203.0.113.9:40000", guessBody(t, wrong, "late")); w.Code != http.StatusTooManyRequests {
		t.Fatalf("a guess from a fresh address during the flood: %d, want 429", w.Code)
	}
	// ...but a real client with a valid token gets in.
	good := f.token(time.Hour, 0, time.Now())
	if _, err := Join(context.Background(), f.addr, good, newIdentity(t), "honest", nil); err != nil {
		t.Fatalf("a valid token during the flood: %v", err)
	}
	if st := f.srv.Stats(); st.JoinsAdmitted != 1 {
		t.Fatalf("admitted %d, want the honest join", st.JoinsAdmitted)
	}
}

// TestLimitByPrefix: IPv6 sources are limited by /64 (an attacker holds
// all of one or none), IPv4 by address; the table evicts the least
// recently seen prefix instead of wiping itself.
func TestLimitByPrefix(t *testing.T) {
	now := time.Now()
	l := newLimiter(3, time.Minute)
	for i := range 3 {
		l.failed(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1)), now)
	}
	if !l.limited(netip.MustParseAddr("2001:db8:1:2:ffff::1"), now) {
		t.Fatal("three failures from one /64 did not limit the /64")
	}
	if l.limited(netip.MustParseAddr("2001:db8:1:3::1"), now) {
		t.Fatal("the neighbouring /64 is limited")
	}
	for i := range 3 {
		l.failed(netip.MustParseAddr("192.0.2.1"), now.Add(time.Duration(i)))
	}
	if !l.limited(netip.MustParseAddr("::ffff:192.0.2.1"), now) || l.limited(netip.MustParseAddr("192.0.2.2"), now) {
		t.Fatal("IPv4 is not limited per address (mapped form included)")
	}
	// Filling the table with fresh prefixes evicts the oldest, not the
	// limited prefix that was just seen.
	l.limited(netip.MustParseAddr("192.0.2.1"), now) // seen: most recent
	for i := range defaults.EnrollTrackedPrefixes - 1 {
		l.mu.Lock()
		l.prefixes.Add(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32), &failures{n: 1, first: now})
		l.mu.Unlock()
	}
	if !l.limited(netip.MustParseAddr("192.0.2.1"), now) {
		t.Fatal("a full table forgot a limited address that was just seen")
	}
}

// TestChallengesStateless: one address asking for 10,000 challenges takes
// nothing from anyone (the table that filled at 64 × 16 and answered an
// honest hello 503 is gone); a challenge is good once, only from the
// prefix that asked, only until it expires, and not when altered.
func TestChallengesStateless(t *testing.T) {
	c := newChallengeTable()
	now := time.Now()
	from := netip.MustParseAddr("192.0.2.1")
	for range 10000 {
		if _, aerr := c.issue(from, now); aerr != nil {
			t.Fatalf("challenge refused: %v", aerr.msg)
		}
	}
	ch, _ := c.issue(from, now)
	if c.take(ch, netip.MustParseAddr("192.0.2.2"), now) {
		t.Fatal("a challenge was accepted from another address")
	}
	bad := bytes.Clone(ch)
	bad[9] ^= 1
	if c.take(bad, from, now) {
		t.Fatal("an altered challenge was accepted")
	}
	if c.take(ch, from, now.Add(defaults.ChallengeTTL+time.Second)) {
		t.Fatal("an expired challenge was accepted")
	}
	if !c.take(ch, from, now) {
		t.Fatal("a fresh challenge was refused")
	}
	if c.take(ch, from, now) {
		t.Fatal("a challenge was accepted twice")
	}
	v6 := netip.MustParseAddr("2001:db8::1")
	ch6, _ := c.issue(v6, now)
	if !c.take(ch6, netip.MustParseAddr("2001:db8::2"), now) {
		t.Fatal("a challenge was refused from the /64 that asked")
	}
}

// TestConnectionCaps: one address gets at most EnrollMaxConnsPerAddr open
// connections; the next is closed at once, and a slot comes back when a
// connection closes.
func TestConnectionCaps(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitConns(raw)
	defer ln.Close()
	accepted := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	var server []net.Conn
	for range defaults.EnrollMaxConnsPerAddr {
		dial()
		select {
		case c := <-accepted:
			server = append(server, c)
		case <-time.After(5 * time.Second):
			t.Fatal("a connection under the cap was not accepted")
		}
	}
	over := dial()
	over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection over the per-address cap was not closed")
	}
	select {
	case <-accepted:
		t.Fatal("the connection over the cap reached the server")
	default:
	}
	server[0].Close()
	dial()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a freed slot was not given back")
	}
	for _, c := range server[1:] {
		c.Close()
	}
}
