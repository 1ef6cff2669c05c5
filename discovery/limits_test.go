package discovery

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/meshnode/meshnode/identity"
)

// lineCounter is a slog handler target that counts lines and keeps them.
type lineCounter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lineCounter) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.buf.String()), "\n")
}

// newIdle is a Discovery that is loaded but not started: its delegates
// can be driven directly, and what they hand the worker read from revIn.
func newIdle(t *testing.T, tm *testMesh, log *slog.Logger) *Discovery {
	t.Helper()
	n := tm.node("idle")
	cfg := n.config(t)
	if log != nil {
		cfg.Logger = log
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// bogusRevocations is a revocation list of n records with the smallest
// encoding and no valid signature: cheap to send, each a signature check.
func bogusRevocations(n int) []byte {
	list := make([]*identity.Revocation, n)
	for i := range list {
		r := &identity.Revocation{Version: 1, Time: time.Unix(1_800_000_000, 0)}
		r.Node[0], r.Node[1], r.Node[2] = byte(i), byte(i>>8), byte(i>>16)
		list[i] = r
	}
	return append([]byte{stateRevocList}, identity.MarshalRevocations(list)...)
}

// TestRevocationFloodBounded: the 65,536-record push that took seconds of
// CPU and gigabytes of heap is dropped unparsed and counted; a state under
// the byte bound hands the worker at most maxRevocationsPerPush records.
func TestRevocationFloodBounded(t *testing.T) {
	tm := newTestMesh(t)
	d := newIdle(t, tm, nil)
	g := (*delegate)(d)

	flood := bogusRevocations(65536)
	if len(flood) <= maxRemoteState {
		t.Fatalf("flood of %d bytes is under the bound %d: the test proves nothing", len(flood), maxRemoteState)
	}
	g.MergeRemoteState(flood, false)
	if got := d.Rejections()[RejectOversizedState]; got != 1 {
		t.Fatalf("oversized state counted %d times, want 1", got)
	}
	select {
	case list := <-d.revIn:
		t.Fatalf("an oversized state handed the worker %d revocations", len(list))
	default:
	}

	big := bogusRevocations(maxRevocationsPerPush + 1000)
	if len(big) > maxRemoteState {
		t.Fatalf("state of %d bytes over the bound %d", len(big), maxRemoteState)
	}
	g.MergeRemoteState(big, false)
	select {
	case list := <-d.revIn:
		if len(list) != maxRevocationsPerPush {
			t.Fatalf("worker got %d revocations from one push, want the cap %d", len(list), maxRevocationsPerPush)
		}
	default:
		t.Fatal("a state under the bound handed the worker nothing")
	}
}

// TestMergeWithNobodyRefused: a push/pull or join that presents no
// admissible node — none at all included — is refused.
func TestMergeWithNobodyRefused(t *testing.T) {
	tm := newTestMesh(t)
	d := newIdle(t, tm, nil)
	g := (*delegate)(d)
	if err := g.NotifyMerge(nil); !errors.Is(err, errNoneAdmitted) {
		t.Fatalf("merge of no nodes: %v, want errNoneAdmitted", err)
	}
	if err := g.NotifyMerge([]*memberlist.Node{{Name: "ghost", State: memberlist.StateDead}}); !errors.Is(err, errNoneAdmitted) {
		t.Fatalf("merge of a dead stranger only: %v, want errNoneAdmitted", err)
	}
	m := tm.enroll("friend", 0)
	friend := &memberlist.Node{Name: "friend", Addr: testGossipAddr(m.Ticket).AsSlice(), Meta: signedMeta(t, m.ID, m.Ticket), State: memberlist.StateAlive}
	if err := g.NotifyMerge([]*memberlist.Node{friend, {Name: "ghost", State: memberlist.StateAlive, Meta: []byte{1}}}); err != nil {
		t.Fatalf("merge with one admissible member refused: %v", err)
	}
}

// TestRefusalLogSampled: a thousand refusals under a thousand names are
// all counted, but the log gets a burst of lines, each with truncated
// attacker-chosen fields.
func TestRefusalLogSampled(t *testing.T) {
	tm := newTestMesh(t)
	var out lineCounter
	d := newIdle(t, tm, slog.New(slog.NewTextHandler(&out, nil)))
	long := strings.Repeat("x", 10000)
	for i := range 1000 {
		d.rejected(long+string(rune('a'+i%26))+strings.Repeat("y", i), reject(RejectMalformed, long))
	}
	if got := d.Rejections()[RejectMalformed]; got != 1000 {
		t.Fatalf("counted %d refusals, want 1000", got)
	}
	lines := out.lines()
	if len(lines) > refusalLogBurst+2 {
		t.Fatalf("%d refusal log lines for 1000 refusals in a burst, want at most about %d", len(lines), refusalLogBurst)
	}
	for _, l := range lines {
		if len(l) > 3*maxLogField+300 {
			t.Fatalf("refusal log line of %d bytes: attacker-chosen fields not truncated", len(l))
		}
	}
}
