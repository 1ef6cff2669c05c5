package identity

import (
	"encoding/base32"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newInvites(t *testing.T, ca *CA) (*Invites, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "invites.json")
	return OpenInvites(path, ca.Trust), path
}

func mint(t *testing.T, s *Invites, ttl time.Duration, roles Roles) string {
	t.Helper()
	tok, err := s.New(ttl, roles, t0)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tok
}

func TestInviteLifecycle(t *testing.T) {
	ca := newCA(t, "acme")
	s, path := newInvites(t, ca)
	tok := mint(t, s, time.Hour, RoleHub)

	if !strings.HasPrefix(tok, "mnj1-") {
		t.Errorf("token %q lacks the mnj1- prefix", tok)
	}
	iv, err := ParseInvite(tok)
	if err != nil {
		t.Fatalf("ParseInvite(New()): %v", err)
	}
	if iv.CAFingerprint != ca.Fingerprint() {
		t.Errorf("token does not carry the CA fingerprint")
	}
	if iv.String() != tok {
		t.Errorf("Invite.String() = %q, want the token %q", iv.String(), tok)
	}

	// Check does not use the token up.
	for i := range 3 {
		roles, err := s.Check(tok, t0.Add(time.Minute))
		if err != nil || roles != RoleHub {
			t.Fatalf("Check #%d = %v, %v; want hub", i+1, roles, err)
		}
	}
	roles, err := s.Redeem(tok, "beta", t0.Add(2*time.Minute))
	if err != nil || roles != RoleHub {
		t.Fatalf("Redeem = %v, %v; want hub", roles, err)
	}
	for _, op := range []struct {
		name string
		f    func() (Roles, error)
	}{
		{"Redeem", func() (Roles, error) { return s.Redeem(tok, "gamma", t0.Add(3*time.Minute)) }},
		{"Check", func() (Roles, error) { return s.Check(tok, t0.Add(3*time.Minute)) }},
		{"Redeem from a new store", func() (Roles, error) {
			return OpenInvites(path, ca.Trust).Redeem(tok, "delta", t0.Add(3*time.Minute))
		}},
	} {
		_, err := op.f()
		if !errors.Is(err, ErrTokenUsed) {
			t.Errorf("%s after Redeem: %v, want ErrTokenUsed", op.name, err)
		}
		wantErr(t, err, "already used", `"beta"`)
	}

	// Two tokens are independent.
	a, b := mint(t, s, time.Hour, 0), mint(t, s, time.Hour, RoleAdmin)
	if a == b {
		t.Fatal("two tokens are equal")
	}
	if r, err := s.Redeem(b, "x", t0); err != nil || r != RoleAdmin {
		t.Errorf("Redeem(b) = %v, %v", r, err)
	}
	if r, err := s.Redeem(a, "y", t0); err != nil || r != 0 {
		t.Errorf("Redeem(a) after b = %v, %v", r, err)
	}
}

func TestInviteExpiry(t *testing.T) {
	ca := newCA(t, "acme")
	s, _ := newInvites(t, ca)
	tok := mint(t, s, time.Hour, 0)
	if _, err := s.Check(tok, t0.Add(time.Hour-time.Second)); err != nil {
		t.Errorf("Check just before expiry: %v", err)
	}
	for _, at := range []time.Duration{time.Hour, time.Hour + time.Second, 48 * time.Hour} {
		_, err := s.Redeem(tok, "late", t0.Add(at))
		if !errors.Is(err, ErrTokenExpired) {
			t.Errorf("Redeem at +%s: %v, want ErrTokenExpired", at, err)
		}
		wantErr(t, err, "expired")
	}
	// A failed Redeem does not use the token up.
	if _, err := s.Redeem(tok, "on time", t0.Add(time.Minute)); err != nil {
		t.Errorf("Redeem in time after failed late attempts: %v", err)
	}
}

func TestInviteWrongMeshAndUnknown(t *testing.T) {
	ca, other := newCA(t, "acme"), newCA(t, "acme")
	s, _ := newInvites(t, ca)
	o, _ := newInvites(t, other)
	foreignTok := mint(t, o, time.Hour, 0)
	_, err := s.Redeem(foreignTok, "x", t0)
	if !errors.Is(err, ErrTokenWrongMesh) {
		t.Errorf("token of another mesh: %v, want ErrTokenWrongMesh", err)
	}
	// It is still good where it came from.
	if _, err := o.Redeem(foreignTok, "x", t0); err != nil {
		t.Errorf("token at its own mesh after a wrong-mesh attempt: %v", err)
	}

	// Right mesh, never issued.
	var iv Invite
	iv.CAFingerprint = ca.Fingerprint()
	iv.Secret[0] = 1
	mint(t, s, time.Hour, 0) // a store with a record in it
	if _, err := s.Redeem(iv.String(), "x", t0); !errors.Is(err, ErrTokenUnknown) {
		t.Errorf("unissued token: %v, want ErrTokenUnknown", err)
	}
	// A store that was never written.
	empty, _ := newInvites(t, ca)
	if _, err := empty.Check(iv.String(), t0); !errors.Is(err, ErrTokenUnknown) {
		t.Errorf("empty store: %v, want ErrTokenUnknown", err)
	}
}

func TestParseInviteMalformed(t *testing.T) {
	var iv Invite
	for i := range iv.Secret {
		iv.CAFingerprint[i], iv.Secret[i] = byte(i), byte(0xff-i)
	}
	tok := iv.String()
	body := strings.TrimPrefix(tok, "mnj1-")
	// Change one character to another valid base32 character: the checksum
	// catches it.
	swapped := []byte(tok)
	swapped[20] = 'q'
	if tok[20] == 'q' {
		swapped[20] = 'r'
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "does not start with"},
		{"no prefix", body, "does not start with"},
		{"wrong version prefix", "mnj2-" + body, "does not start with"},
		{"bad base32 character", tok[:10] + "1" + tok[11:], "illegal base32"},
		{"bad base32 punctuation", tok[:10] + "!" + tok[11:], "illegal base32"},
		{"truncated", tok[:len(tok)-8], "truncated"},
		{"too long", tok + "aaaaaaaa", "want 68"},
		{"checksum", string(swapped), "checksum"},
		{"prefix only", "mnj1-", "0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseInvite(tc.in)
			if !errors.Is(err, ErrTokenMalformed) {
				t.Fatalf("ParseInvite(%q) = %v, want ErrTokenMalformed", tc.in, err)
			}
			wantErr(t, err, tc.want)
			if got != (Invite{}) {
				t.Errorf("rejected token returned a non-zero invite")
			}
		})
	}
	// Forgiving where a human copies a token: surrounding space, upper case.
	for _, in := range []string{" " + tok + "\n", "mnj1-" + strings.ToUpper(body)} {
		if got, err := ParseInvite(in); err != nil || got != iv {
			t.Errorf("ParseInvite(%q) = %v", in, err)
		}
	}
}

func TestInvitesFile(t *testing.T) {
	ca := newCA(t, "acme")
	s, path := newInvites(t, ca)
	tok := mint(t, s, time.Hour, RoleAdmin|RoleHub)
	mint(t, s, time.Hour, 0)
	if m := fileMode(t, path); m != 0o600 {
		t.Errorf("invites file mode %#o, want 0600", m)
	}
	iv, _ := ParseInvite(tok)
	data, _ := os.ReadFile(path)
	low := strings.ToLower(string(data))
	body := strings.TrimPrefix(tok, "mnj1-")
	for what, secret := range map[string]string{
		"secret (hex)":    hex.EncodeToString(iv.Secret[:]),
		"secret (base32)": strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(iv.Secret[:]))[:20],
		"token":           body[50:80],
	} {
		if strings.Contains(low, strings.ToLower(secret)) {
			t.Errorf("invites file contains the %s", what)
		}
	}
	if _, err := s.Redeem(tok, "beta", t0); err != nil {
		t.Fatal(err)
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Errorf("invites file mode after Redeem %#o, want 0600", m)
	}
	for _, name := range dirEntries(t, filepath.Dir(path)) {
		if strings.Contains(name, ".tmp") {
			t.Errorf("temp file %s left behind", name)
		}
	}

	// A corrupt store is an error naming the file, not an empty store.
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Check(tok, t0)
	wantErr(t, err, path, "corrupt")
	_, err = s.New(time.Hour, 0, t0)
	wantErr(t, err, path, "corrupt")
}

func TestInviteNewRejects(t *testing.T) {
	s, _ := newInvites(t, newCA(t, "acme"))
	for _, tc := range []struct {
		ttl   time.Duration
		roles Roles
	}{{0, 0}, {-time.Hour, 0}, {time.Hour, 0x10}} {
		if tok, err := s.New(tc.ttl, tc.roles, t0); err == nil {
			t.Errorf("New(%s, %#x) = %q, want an error", tc.ttl, uint8(tc.roles), tok)
		}
	}
}

// TestInvitePrune: used and expired records are kept for a week (so the
// answer stays "already used"/"expired"), then forgotten.
func TestInvitePrune(t *testing.T) {
	s, path := newInvites(t, newCA(t, "acme"))
	used := mint(t, s, time.Hour, 0)
	expired := mint(t, s, time.Hour, 0)
	if _, err := s.Redeem(used, "x", t0); err != nil {
		t.Fatal(err)
	}
	// Six days on, a write keeps both.
	if _, err := s.New(time.Hour, 0, t0.Add(6*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(used, t0.Add(6*24*time.Hour)); !errors.Is(err, ErrTokenUsed) {
		t.Errorf("used token after 6 days: %v", err)
	}
	if _, err := s.Check(expired, t0.Add(6*24*time.Hour)); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("expired token after 6 days: %v", err)
	}
	// Eight days on, a write drops both.
	if _, err := s.New(time.Hour, 0, t0.Add(8*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{used, expired} {
		if _, err := s.Check(tok, t0.Add(8*24*time.Hour)); !errors.Is(err, ErrTokenUnknown) {
			t.Errorf("week-old token: %v, want ErrTokenUnknown", err)
		}
	}
	data, _ := os.ReadFile(path)
	if n := strings.Count(string(data), `"hash"`); n != 2 {
		t.Errorf("store holds %d records after pruning, want the 2 live ones", n)
	}
}

// TestInviteConcurrentRedeem: many redeemers of one token, some sharing an
// Invites value and some with their own (as separate processes would be):
// exactly one succeeds, every other one is told it was used.
func TestInviteConcurrentRedeem(t *testing.T) {
	ca := newCA(t, "acme")
	shared, path := newInvites(t, ca)
	tok := mint(t, shared, time.Hour, RoleHub)
	const n = 16
	var ok, used atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		s := shared
		if i%2 == 1 {
			s = OpenInvites(path, ca.Trust)
		}
		wg.Go(func() {
			<-start
			_, err := s.Redeem(tok, "node", t0)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrTokenUsed):
				used.Add(1)
			default:
				t.Errorf("Redeem: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || used.Load() != n-1 {
		t.Errorf("%d redeems succeeded and %d were told \"used\", want 1 and %d", ok.Load(), used.Load(), n-1)
	}
}

// TestInvitesFileRolesAreNumbers: the invites file keeps storing roles as
// a JSON number (as it did before Roles marshalled as text), so a store
// written by an older meshnode still redeems with its roles.
func TestInvitesFileRolesAreNumbers(t *testing.T) {
	ca := newCA(t, "acme")
	s, path := newInvites(t, ca)
	tok := mint(t, s, time.Hour, RoleAdmin|RoleHub)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"roles": 3`) {
		t.Fatalf("invites file does not store roles as the number 3:\n%s", data)
	}
	roles, err := s.Redeem(tok, "beta", t0)
	if err != nil || roles != RoleAdmin|RoleHub {
		t.Fatalf("redeem: roles %v, %v; want admin,hub", roles, err)
	}
}
