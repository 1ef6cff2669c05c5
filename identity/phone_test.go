package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goldenPhoneTicket is the golden CA's ticket, at t0 for 365 days, for
// phone "pixel" (the zero seed) with hub "alpha" (the counting seed) and
// the default grant. Frozen like goldenTicket: a change is a new version.
const goldenPhoneTicket = "0105706978656c" + // version 1, name_len 5, "pixel"
	"3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29" + // identity (zero seed)
	"e49aeba522296e8ba0e97e715a22f20258acf096c13f07c42cbc236cb6fb5366" + // wireguard
	"fdb4b7e4b5ab139e3940e64b54917220" + // overlay address
	"01" + "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664" + // 1 hub: alpha
	"01" + "0e" + "70686f6e65732e706978656c2e3e" + // pub: "phones.pixel.>"
	"02" + "0e" + "70686f6e65732e706978656c2e3e" + "15" + "5f494e424f582e70686f6e65732e706978656c2e3e" + // sub: same, "_INBOX.phones.pixel.>"
	"0000000069b579ea" + // not_before = t0 - 1 minute
	"000000006b96ada6" + // not_after = t0 + 365 days
	"b4b7e4b5abbe6fd9" + // CA key id
	"c43e19c2822c2af4fa5a44b90a8bf36bf2b099b074de08cf3c6d63ab1fbfeabd" + // signature
	"f7f2ad4d26a6aad804449edddc56ab535c85baa9175238ad24c7734a96257e03"

func goldenPhone(t testing.TB) *PhoneTicket {
	t.Helper()
	pub, sub := DefaultPhoneSubjects("pixel")
	pt, err := fixedCA(t).IssuePhoneTicket("pixel", FromSeed(seedOf(0)), []NodePublic{FromSeed(seedCounting()).Public()}, pub, sub, t0, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

func TestGoldenPhoneTicket(t *testing.T) {
	ca := fixedCA(t)
	got := goldenPhone(t).Marshal()
	if hex.EncodeToString(got) != goldenPhoneTicket {
		t.Fatalf("phone ticket encoding changed:\n got %x\nwant %s", got, goldenPhoneTicket)
	}
	want := mustHex(t, goldenPhoneTicket)
	body, sig := want[:len(want)-ed25519.SignatureSize], want[len(want)-ed25519.SignatureSize:]
	caPub := ed25519.PublicKey(mustHex(t, goldenCAPublic))
	if !ed25519.Verify(caPub, append([]byte("meshnode phone ticket v1"), body...), sig) {
		t.Errorf("golden phone ticket signature does not verify as Ed25519(CA, %q || body)", "meshnode phone ticket v1")
	}
	// No other CA-signed record may pass for a phone ticket, nor the
	// reverse: the domains differ.
	for _, d := range []string{"meshnode ticket v1", "meshnode revocation v1"} {
		if ed25519.Verify(caPub, append([]byte(d), body...), sig) {
			t.Errorf("phone ticket signature verifies under %q", d)
		}
	}
	p, err := ParsePhoneTicket(want)
	if err != nil {
		t.Fatalf("ParsePhoneTicket(golden): %v", err)
	}
	if err := p.Verify(ca.Trust, t0); err != nil {
		t.Errorf("golden phone ticket does not verify: %v", err)
	}
	phone := FromSeed(seedOf(0))
	if p.Name != "pixel" || p.Node != phone.Public() || p.WireGuard != phone.WireGuardPublic() ||
		p.Addr.String() != goldenKeys[0].overlay || len(p.Hubs) != 1 || p.Hubs[0] != FromSeed(seedCounting()).Public() ||
		strings.Join(p.Pub, " ") != "phones.pixel.>" || strings.Join(p.Sub, " ") != "phones.pixel.> _INBOX.phones.pixel.>" ||
		!p.NotBefore.Equal(t0.Add(-time.Minute)) || !p.NotAfter.Equal(t0.Add(365*24*time.Hour)) {
		t.Errorf("golden phone ticket decodes to %+v", p)
	}
	if !p.Equal(goldenPhone(t)) {
		t.Error("decoded golden ticket is not Equal to the issued one")
	}
}

func TestPhoneTicketRefusals(t *testing.T) {
	ca := fixedCA(t)
	other := newCA(t, "other")
	phone, hub := FromSeed(seedOf(0)), FromSeed(seedCounting()).Public()
	pub, sub := DefaultPhoneSubjects("pixel")
	issue := func(name string, hubs []NodePublic, pub, sub []string) error {
		_, err := ca.IssuePhoneTicket(name, phone, hubs, pub, sub, t0, time.Hour)
		return err
	}
	wantErr(t, issue("Pixel", []NodePublic{hub}, pub, sub), "name")
	wantErr(t, issue("pixel", nil, pub, sub), "0 hubs")
	wantErr(t, issue("pixel", []NodePublic{hub, hub}, pub, sub), "named twice")
	wantErr(t, issue("pixel", []NodePublic{phone.Public()}, pub, sub), "not a member key")
	wantErr(t, issue("pixel", []NodePublic{hub}, []string{"a..b"}, sub), "empty token")
	wantErr(t, issue("pixel", []NodePublic{hub}, []string{"a.>.b"}, sub), "> only last")
	wantErr(t, issue("pixel", []NodePublic{hub}, pub, []string{"a b"}), "printable")
	wantErr(t, issue("pixel", []NodePublic{hub}, pub, []string{"a*"}), "whole tokens")

	good := goldenPhone(t)
	if err := good.Verify(other.Trust, t0); err == nil {
		t.Error("another CA's trust verifies the ticket")
	}
	if err := good.Verify(ca.Trust, t0.Add(366*24*time.Hour)); !errors.Is(err, ErrPhoneExpired) {
		t.Errorf("a year and a day later: %v, want ErrPhoneExpired", err)
	}
	bad := *good
	bad.Pub = []string{">"} // a wider grant than the CA signed
	if err := bad.Verify(ca.Trust, t0); err == nil {
		t.Error("a ticket whose grant was widened still verifies")
	}
	// Trailing bytes and other versions are refused.
	b := good.Marshal()
	if _, err := ParsePhoneTicket(append(bytes.Clone(b), 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	b2 := bytes.Clone(b)
	b2[0] = 2
	wantErr(t, func() error { _, err := ParsePhoneTicket(b2); return err }(), "unknown version 2")
}

func TestPhoneSetConvergesAndHonoursRevocation(t *testing.T) {
	ca := fixedCA(t)
	revs := NewRevocationSet(ca.Trust)
	s := NewPhoneSet(ca.Trust, revs)
	old := goldenPhone(t)
	pub, sub := DefaultPhoneSubjects("pixel")
	hub2 := FromSeed(seedOf(0xff)).Public()
	newer, err := ca.IssuePhoneTicket("pixel", FromSeed(seedOf(0)), []NodePublic{old.Hubs[0], hub2}, pub, sub, t0.Add(time.Hour), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Either order ends with the newer ticket.
	for _, order := range [][]*PhoneTicket{{old, newer}, {newer, old}} {
		s := NewPhoneSet(ca.Trust, revs)
		if _, err := s.Merge(order, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Get(old.Node); !got.Equal(newer) {
			t.Errorf("merge %v kept the older ticket", order)
		}
	}
	if ok, err := s.Add(old, t0); !ok || err != nil {
		t.Fatalf("Add: %v %v", ok, err)
	}
	if _, ok := s.ByName("pixel"); !ok {
		t.Fatal("ByName misses the phone")
	}
	r, err := ca.Revoke(old.Node, "phone lost", t0)
	if err != nil {
		t.Fatal(err)
	}
	revs.Add(r)
	if _, ok := s.Get(old.Node); ok || len(s.List()) != 0 {
		t.Error("a revoked phone is still listed")
	}
	if ok, err := s.Add(newer, t0.Add(time.Hour)); ok || err != nil {
		t.Errorf("a revoked phone's ticket was re-added: %v %v", ok, err)
	}
	if !s.Prune(t0) {
		t.Error("Prune dropped nothing")
	}
}

func TestPhoneFileRoundTrip(t *testing.T) {
	ca := fixedCA(t)
	path := filepath.Join(t.TempDir(), "phones.bin")
	s := NewPhoneSet(ca.Trust, nil)
	s.Add(goldenPhone(t), t0)
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Errorf("phone file mode %v, want 0600", m)
	}
	l, err := LoadPhones(path, ca.Trust, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.List(); len(got) != 1 || !got[0].Equal(goldenPhone(t)) {
		t.Errorf("loaded %v", got)
	}
	// An expired ticket is dropped on load, not an error.
	l, err = LoadPhones(path, ca.Trust, nil, t0.Add(400*24*time.Hour))
	if err != nil || len(l.List()) != 0 {
		t.Errorf("expired load: %v, %d tickets", err, len(l.List()))
	}
}

func FuzzParsePhoneTicket(f *testing.F) {
	ca := fixedCA(f)
	valid := map[string]bool{string(goldenPhone(f).Marshal()): true}
	big := []string{}
	for range MaxPhoneSubjects {
		big = append(big, strings.Repeat("s", MaxSubjectLen))
	}
	hubs := []NodePublic{}
	for i := range MaxPhoneHubs {
		hubs = append(hubs, FromSeed(seedOf(byte(i+1))).Public())
	}
	pt, err := ca.IssuePhoneTicket(strings.Repeat("x", 63), FromSeed(seedOf(0)), hubs, big, nil, t0, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	valid[string(pt.Marshal())] = true
	for v := range valid {
		f.Add([]byte(v))
	}
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Add(MarshalPhoneTickets([]*PhoneTicket{goldenPhone(f)}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if l, err := ParsePhoneTickets(data); err == nil {
			if enc := MarshalPhoneTickets(l); !bytes.Equal(enc, data) {
				t.Fatalf("accepted list %x but it re-encodes to %x", data, enc)
			}
		}
		pt, err := ParsePhoneTicket(data)
		if err != nil {
			if pt != nil {
				t.Fatalf("rejected input returned a ticket")
			}
			return
		}
		if enc := pt.Marshal(); !bytes.Equal(enc, data) {
			t.Fatalf("accepted %x but it re-encodes to %x", data, enc)
		}
		if pt.Verify(ca.Trust, t0) == nil && !valid[string(data)] {
			t.Fatalf("a fuzzed phone ticket verifies: %x", data)
		}
	})
}
