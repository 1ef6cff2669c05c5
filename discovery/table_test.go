package discovery

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/meshnode/meshnode/identity"
)

// countingHandler counts log records whose message starts with prefix.
type countingHandler struct {
	prefix string
	n      *atomic.Int32
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

func TestRejectionLoggedOncePerNodeAndReason(t *testing.T) {
	tm := newTestMesh(t)
	n := tm.node("judge")
	cfg := n.config(t)
	var logged atomic.Int32
	cfg.Logger = slog.New(countingHandler{"gossip: node not admitted", &logged})
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cases, _ := badCases(t, tm)
	r := cases[RejectBadMetaSignature]
	node := &memberlist.Node{Name: r.name, Addr: net.IP(r.addr.AsSlice()), Meta: r.meta}
	for range 5 {
		if (*delegate)(d).NotifyAlive(node) == nil {
			t.Fatal("admitted")
		}
	}
	if got := d.Rejections()[RejectBadMetaSignature]; got != 5 {
		t.Fatalf("counted %d, want 5", got)
	}
	if logged.Load() != 1 {
		t.Fatalf("logged %d times, want once", logged.Load())
	}
}

// newWithPeers makes a Discovery (not started) that has seen peers alive.
func newWithPeers(t *testing.T, tm *testMesh, n *testNode, peers ...*testNode) *Discovery {
	d, err := New(n.config(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		md, rej := d.admit(p.name(), net.IP(p.addr().AsSlice()), signedMeta(t, p.m.ID, p.m.Ticket), time.Now())
		if rej != nil {
			t.Fatal(rej)
		}
		d.setMember(md, StateAlive)
	}
	return d
}

func TestChangesCoalesce(t *testing.T) {
	tm := newTestMesh(t)
	a, b, c := tm.node("a"), tm.node("b"), tm.node("c")
	d := newWithPeers(t, tm, a, b, c) // several changes, nobody reading
	select {
	case <-d.Changes():
	default:
		t.Fatal("no change signalled")
	}
	select {
	case <-d.Changes():
		t.Fatal("changes not coalesced")
	default:
	}
	md, _ := d.checkSignatures(signedMeta(t, b.m.ID, b.m.Ticket))
	d.setMember(md, StateDead)
	select {
	case <-d.Changes():
	default:
		t.Fatal("death not signalled")
	}
}

func TestPersistenceAndRetention(t *testing.T) {
	tm := newTestMesh(t)
	a, b, c := tm.node("a"), tm.node("b"), tm.node("c")
	d := newWithPeers(t, tm, a, b, c)
	mdC, _ := d.checkSignatures(signedMeta(t, c.m.ID, c.m.Ticket))
	d.setMember(mdC, StateDead)
	if err := d.saveMembers(); err != nil {
		t.Fatal(err)
	}
	path := a.config(t).MembersPath

	// Reloaded: b was alive (now unknown, kept), c dead (kept until
	// retention runs out, counted from its death).
	d2, err := New(a.config(t))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]State{}
	for _, m := range d2.Known() {
		got[m.Name] = m.State
	}
	if len(got) != 2 || got["b"] != StateUnknown || got["c"] != StateDead {
		t.Fatalf("reloaded %v", got)
	}
	d2.sweep(time.Now().Add(DefaultRetention + time.Minute))
	if _, ok := stateOf(d2, "c"); ok {
		t.Fatal("dead member kept past retention")
	}
	if _, ok := stateOf(d2, "b"); ok {
		t.Fatal("unseen member kept past retention")
	}
	if _, ok := stateOf(d2, "a"); !ok {
		t.Fatal("sweep removed self")
	}

	// A dead member past retention in the file is not loaded.
	cfg := a.config(t)
	cfg.Retention = time.Nanosecond
	d3, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range d3.Known() {
		if m.Name == "c" {
			t.Fatal("dead member past retention loaded")
		}
	}

	// A tampered record is dropped, the rest kept.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f membersFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	for i := range f.Members {
		if tk, _ := identity.ParseTicket(f.Members[i].Ticket); tk.Name == "b" {
			f.Members[i].Meta[len(f.Members[i].Meta)-1] ^= 1
		}
	}
	raw, _ = json.Marshal(f)
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	d4, err := New(a.config(t))
	if err != nil {
		t.Fatal(err)
	}
	if k := d4.Known(); len(k) != 1 || k[0].Name != "c" {
		t.Fatalf("after tampering: %+v", k)
	}

	// A revoked member in the file is not loaded.
	rev, _ := tm.ca.Revoke(c.m.ID.Public(), "x", time.Now())
	if _, err := a.revs.Add(rev); err != nil {
		t.Fatal(err)
	}
	d5, err := New(a.config(t))
	if err != nil {
		t.Fatal(err)
	}
	if k := d5.Known(); len(k) != 0 {
		t.Fatalf("revoked member loaded: %+v", k)
	}

	// A corrupt file is an error naming it.
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(a.config(t)); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt member table: %v", err)
	}
}

func TestSetLocalBounds(t *testing.T) {
	tm := newTestMesh(t)
	n := tm.node("a")
	d, err := New(n.config(t))
	if err != nil {
		t.Fatal(err)
	}
	before := d.local.seq
	var eps []netip.AddrPort
	for i := range MaxEndpoints + 1 {
		eps = append(eps, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 51820))
	}
	if err := d.SetLocal(eps, nil); err == nil {
		t.Fatal("too many endpoints accepted")
	}
	if err := d.SetLocal(eps[:2], nil); err != nil {
		t.Fatal(err)
	}
	if d.local.seq <= before {
		t.Fatal("sequence not bumped")
	}
	self := d.Members()[0]
	if !self.Self || len(self.Endpoints) != 2 {
		t.Fatalf("self entry %+v", self)
	}
}

type levelHandler struct{ levels *[]slog.Level }

func (h levelHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h levelHandler) Handle(_ context.Context, r slog.Record) error {
	*h.levels = append(*h.levels, r.Level)
	return nil
}
func (h levelHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h levelHandler) WithGroup(string) slog.Handler      { return h }

func TestMemberlistLogLevels(t *testing.T) {
	var levels []slog.Level
	w := &logWriter{slog.New(levelHandler{&levels})}
	for _, line := range []string{
		"[ERR] memberlist: Failed to send ping",
		"[WARN] memberlist: ignoring alive message for 'x': revoked",
		"[ERR] memberlist: Failed push/pull merge: no node admitted",
		"[DEBUG] memberlist: Initiating push/pull sync",
		"[INFO] memberlist: Suspect x has failed",
	} {
		w.Write([]byte(line + "\n"))
	}
	want := []slog.Level{slog.LevelError, slog.LevelDebug, slog.LevelDebug, slog.LevelDebug, slog.LevelInfo}
	if !slices.Equal(levels, want) {
		t.Fatalf("levels %v, want %v", levels, want)
	}
}

func TestAfterShutdown(t *testing.T) {
	tm := newTestMesh(t)
	n := tm.node("a")
	d := n.start(t)
	if err := d.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := d.Leave(time.Second); err == nil {
		t.Fatal("Leave after Shutdown succeeded")
	}
	if _, err := d.Join(nil); err == nil {
		t.Fatal("Join after Shutdown succeeded")
	}
	if err := d.Start(t.Context()); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
	if err := d.Shutdown(); err != nil {
		t.Fatal(err)
	}
}

// A member the persisted table records as left is rejoined after a
// restart; one seen leaving during this run is not. When a whole mesh
// stops at once, two members may each record the other as left: if
// neither rejoined, they would stay split.
func TestRejoinTargetsIncludePersistedLeft(t *testing.T) {
	tm := newTestMesh(t)
	a, b, c := tm.node("a"), tm.node("b"), tm.node("c")
	cfg := a.config(t)
	// b left before the restart; c was alive.
	src, err := New(tm.node("x").config(t))
	if err != nil {
		t.Fatal(err)
	}
	var recs []Member
	for _, n := range []*testNode{b, c} {
		m := src.Admit(n.m.Ticket, nil)
		m.State, m.LastChange = StateAlive, time.Now().Add(-time.Minute)
		if n == b {
			m.State = StateLeft
		}
		recs = append(recs, m)
	}
	if err := WriteMembers(cfg.MembersPath, recs); err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := stateOf(d, "b"); !ok || st != StateLeft {
		t.Fatalf("b loaded as %v, %v; want left", st, ok)
	}
	if got := len(d.rejoinTargets()); got != 2 {
		t.Fatalf("rejoin targets after restart: %d, want 2 (b, recorded as left, and c)", got)
	}
	// c leaves now, in this run: it is no longer chased.
	d.mu.Lock()
	d.table["c"].State, d.table["c"].LastChange = StateLeft, time.Now()
	d.mu.Unlock()
	if got := len(d.rejoinTargets()); got != 1 {
		t.Fatalf("rejoin targets after c left: %d, want 1", got)
	}
}
