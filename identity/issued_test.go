package identity

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIssuedReservesNamesAndKeys(t *testing.T) {
	ca := newCA(t, "acme")
	path := filepath.Join(t.TempDir(), "issued.json")
	s := OpenIssued(path)
	now := time.Now()
	a, b, c := FromSeed(Seed{1}), FromSeed(Seed{2}), FromSeed(Seed{3})
	ta, err := ca.IssueTicket("alpha", a.Public(), a.WireGuardPublic(), 0, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	short, err := ca.IssueTicket("beta", b.Public(), b.WireGuardPublic(), 0, now.Add(-2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range []*Ticket{ta, short} {
		if err := s.Record(tk, now); err != nil {
			t.Fatal(err)
		}
	}
	revoked := func(k NodePublic) bool { return false }
	for _, tc := range []struct {
		name, asked string
		node        NodePublic
		wg          WireGuardPublic
		says        string // "" = no conflict
	}{
		{"another identity, same name", "alpha", c.Public(), c.WireGuardPublic(), `name "alpha" is reserved`},
		{"another identity, same WireGuard key", "gamma", c.Public(), a.WireGuardPublic(), `ticket of member "alpha"`},
		{"same identity, another name", "alpha2", a.Public(), a.WireGuardPublic(), `as "alpha"`},
		{"same identity, same name", "alpha", a.Public(), a.WireGuardPublic(), ""},
		{"the name of an expired ticket", "beta", c.Public(), c.WireGuardPublic(), ""},
		{"nothing in common", "gamma", c.Public(), c.WireGuardPublic(), ""},
	} {
		why, err := s.Conflict(tc.asked, tc.node, tc.wg, now, revoked)
		if err != nil || (tc.says == "") != (why == "") || !strings.Contains(why, tc.says) {
			t.Errorf("%s: %q, %v; want %q", tc.name, why, err, tc.says)
		}
	}
	if why, _ := s.Conflict("alpha", c.Public(), c.WireGuardPublic(), now, func(k NodePublic) bool { return k == a.Public() }); why != "" {
		t.Errorf("the name of a revoked identity is still reserved: %s", why)
	}
	// A later ticket of the same identity replaces the earlier one.
	renamed, _ := ca.IssueTicket("alpha-new", a.Public(), a.WireGuardPublic(), 0, now, time.Hour)
	if err := s.Record(renamed, now); err != nil {
		t.Fatal(err)
	}
	if why, _ := s.Conflict("alpha", c.Public(), c.WireGuardPublic(), now, revoked); why != "" {
		t.Errorf("a replaced ticket still reserves its name: %s", why)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v %v", fi, err)
	}
	os.WriteFile(path, []byte("{"), 0o600)
	if _, err := s.Conflict("x", c.Public(), c.WireGuardPublic(), now, revoked); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt file: %v, want an error naming it", err)
	}
}

// FuzzIssuedFile: whatever the file holds, decoding it fails with an
// error naming the file or yields records that encode back to a file
// that decodes to the same records; it never panics.
func FuzzIssuedFile(f *testing.F) {
	f.Add([]byte(`[{"name":"a","node":"node:` + strings.Repeat("00", 32) + `","wireguard":"` + FromSeed(Seed{1}).WireGuardPublic().String() + `","not_after":"2030-01-01T00:00:00Z"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := parseIssued(b, "/state/issued.json")
		if err != nil {
			if !strings.Contains(err.Error(), "/state/issued.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		again, err := json.Marshal(recs)
		if err != nil {
			t.Fatal(err)
		}
		back, err := parseIssued(again, "x")
		if err != nil || len(back) != len(recs) {
			t.Fatalf("records do not round-trip: %v", err)
		}
	})
}

// TestIssuedCoreHolders: the core set is the unexpired, unrevoked core
// tickets of the record; a record written before core members (no roles)
// counts as not core, and a renewal without the core bit drops it.
func TestIssuedCoreHolders(t *testing.T) {
	ca := newCA(t, "acme")
	path := filepath.Join(t.TempDir(), "issued.json")
	s := OpenIssued(path)
	now := time.Now()
	a, b, c, d := FromSeed(Seed{1}), FromSeed(Seed{2}), FromSeed(Seed{3}), FromSeed(Seed{4})
	issueAt := func(name string, id *Identity, roles Roles, start time.Time) *Ticket {
		t.Helper()
		tk, err := ca.IssueTicket(name, id.Public(), id.WireGuardPublic(), roles, start, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Record(tk, now); err != nil {
			t.Fatal(err)
		}
		return tk
	}
	issueAt("alpha", a, RoleCore|RoleAdmin, now)
	issueAt("beta", b, RoleCore, now)
	issueAt("gamma", c, 0, now)
	// Written by an earlier build: no roles field.
	old := strings.Replace(mustReadString(t, path), `"roles": "core"`, `"zzz": 1`, 1)
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	issueAt("delta", d, RoleCore, now.Add(-2*time.Hour)) // expired
	got, err := s.CoreHolders(now, func(k NodePublic) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[a.Public()] {
		t.Errorf("core holders = %v; want only alpha (beta's record has no roles, gamma is no core, delta expired)", got)
	}
	if got, _ := s.CoreHolders(now, func(k NodePublic) bool { return k == a.Public() }); len(got) != 0 {
		t.Errorf("a revoked core member still counts: %v", got)
	}
	issueAt("alpha", a, RoleAdmin, now) // renewed without the core bit
	if got, _ := s.CoreHolders(now, nil); len(got) != 0 {
		t.Errorf("a replaced core ticket still counts: %v", got)
	}
}

func mustReadString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
