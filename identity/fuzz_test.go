package identity

import (
	"bytes"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for every decoder of untrusted or on-disk bytes. Each one
// checks: no panic; a rejection is an error and a zero result; an accepted
// input re-encodes to the same bytes where the format is canonical, and to
// something that decodes to the same value where it is not.

func FuzzParseSeedFile(f *testing.F) {
	for _, g := range goldenKeys {
		f.Add([]byte(g.seedFile))
	}
	good := MarshalSeedFile(seedCounting())
	f.Add(good[:len(good)-1])
	f.Add(bytes.ToUpper(good))
	f.Add(append(bytes.Clone(good), '\n'))
	f.Add([]byte(seedFileHeader))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSeedFile(data)
		if err != nil {
			if s != (Seed{}) {
				t.Fatalf("rejected input returned a seed")
			}
			if err.Error() == "" {
				t.Fatalf("empty error")
			}
			return
		}
		// Canonical up to the case of the hex digits.
		if enc := MarshalSeedFile(s); !bytes.Equal(enc, bytes.ToLower(data)) {
			t.Fatalf("accepted %q but it re-encodes to %q", data, enc)
		}
	})
}

func FuzzParseTicket(f *testing.F) {
	ca := fixedCA(f)
	// The seeds are the only tickets that may verify: a mutation that
	// still verifies would be a forgery.
	valid := map[string]bool{string(mustHex(f, goldenTicket)): true, string(mustHex(f, goldenTicketCore)): true}
	for _, name := range []string{"a", strings.Repeat("x", 63)} {
		tk, err := ca.IssueTicket(name, FromSeed(seedOf(1)).Public(), FromSeed(seedOf(1)).WireGuardPublic(), RoleHub, t0, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		valid[string(tk.Marshal())] = true
	}
	for v := range valid {
		f.Add([]byte(v))
	}
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := ParseTicket(data)
		if err != nil {
			if tk != nil {
				t.Fatalf("rejected input returned a ticket")
			}
			return
		}
		if enc := tk.Marshal(); !bytes.Equal(enc, data) {
			t.Fatalf("accepted %x but it re-encodes to %x", data, enc)
		}
		if len(data) > MaxTicketSize {
			t.Fatalf("accepted a %d-byte ticket, over MaxTicketSize %d", len(data), MaxTicketSize)
		}
		if tk.Verify(ca.Trust, t0) == nil && !valid[string(data)] {
			t.Fatalf("a fuzzed ticket verifies: %x", data)
		}
	})
}

func FuzzParseRevocation(f *testing.F) {
	ca := fixedCA(f)
	f.Add(mustHex(f, goldenRevocation))
	f.Add(mustHex(f, goldenRevocationV2))
	long, err := ca.RevokeMember(RevokeRequest{
		Node: FromSeed(seedOf(2)).Public(), Name: strings.Repeat("n", 63), Issuer: strings.Repeat("i", 63),
		Reason: strings.Repeat("r", MaxReasonLen),
	}, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(long.Marshal())
	f.Add([]byte{2})
	r, err := ca.Revoke(FromSeed(seedOf(1)).Public(), strings.Repeat("é", MaxReasonLen/2), t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(r.Marshal())
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRevocation(data)
		if err != nil {
			if r != nil {
				t.Fatalf("rejected input returned a revocation")
			}
			return
		}
		if enc := r.Marshal(); !bytes.Equal(enc, data) {
			t.Fatalf("accepted %x but it re-encodes to %x", data, enc)
		}
		_ = r.Verify(ca.Trust) // must not panic
	})
}

func FuzzParseRevocations(f *testing.F) {
	ca := fixedCA(f)
	var list []*Revocation
	for i := range 3 {
		r, err := ca.Revoke(FromSeed(seedOf(byte(i))).Public(), "gone", t0)
		if err != nil {
			f.Fatal(err)
		}
		list = append(list, r)
	}
	f.Add(MarshalRevocations(nil))
	f.Add(MarshalRevocations(list[:1]))
	f.Add(MarshalRevocations(list))
	f.Add([]byte("MNRV\x01\xff\xff\xff\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseRevocations(data)
		if err != nil {
			if l != nil {
				t.Fatalf("rejected input returned records")
			}
			return
		}
		if enc := MarshalRevocations(l); !bytes.Equal(enc, data) {
			t.Fatalf("accepted %x but it re-encodes to %x", data, enc)
		}
		// Merging fuzzed records must not panic; only the untouched
		// seeds' records are valid.
		s := NewRevocationSet(ca.Trust)
		s.Merge(l)
	})
}

func FuzzParseInvite(f *testing.F) {
	var iv Invite
	for i := range iv.Secret {
		iv.CAFingerprint[i], iv.Secret[i] = byte(i), byte(3*i)
	}
	tok := iv.String()
	f.Add(tok)
	f.Add(strings.ToUpper(tok))
	f.Add(" " + tok + "\n")
	f.Add(tok[:len(tok)-1])
	f.Add("mnj1-")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseInvite(s)
		if err != nil {
			if got != (Invite{}) {
				t.Fatalf("rejected input returned an invite")
			}
			if !strings.Contains(err.Error(), ErrTokenMalformed.Error()) {
				t.Fatalf("rejection %q does not say the token is malformed", err)
			}
			return
		}
		// Tokens are typed and pasted by people, so case and surrounding
		// space are forgiven: the canonical form is what String prints,
		// and it decodes to the same invite.
		enc := got.String()
		if enc != strings.ToLower(enc) || !strings.HasPrefix(enc, tokenPrefix) {
			t.Fatalf("String() = %q is not a canonical token", enc)
		}
		if back, err := ParseInvite(enc); err != nil || back != got {
			t.Fatalf("re-encoded token %q does not decode to the same invite: %v", enc, err)
		}
	})
}

func FuzzParseNodeCert(f *testing.F) {
	ca := fixedCA(f)
	nc, err := ca.IssueNodeCert("alpha", FromSeed(seedCounting()).Public(), t0, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(nc.PEM)
	f.Add(ca.PEM)
	f.Add(nc.PEM[:len(nc.PEM)/2])
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseNodeCert(data, ca.Trust, t0)
		if err != nil {
			if got != nil {
				t.Fatalf("rejected input returned a certificate")
			}
			return
		}
		// PEM is not canonical (headers, line breaks); the DER is.
		again, err := ParseNodeCert(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: got.Cert.Raw}), ca.Trust, t0)
		if err != nil || !bytes.Equal(again.Cert.Raw, got.Cert.Raw) || again.Node() != got.Node() {
			t.Fatalf("accepted certificate does not survive re-encoding: %v", err)
		}
	})
}

func FuzzParseTrust(f *testing.F) {
	ca := fixedCA(f)
	f.Add(ca.PEM)
	f.Add(newCA(f, strings.Repeat("m", 63)).PEM)
	f.Add(ca.PEM[:len(ca.PEM)-30])
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ParseTrust(data)
		if err != nil {
			if tr != nil {
				t.Fatalf("rejected input returned a trust")
			}
			return
		}
		again, err := ParseTrust(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tr.Cert.Raw}))
		if err != nil || again.Public != tr.Public || again.Mesh != tr.Mesh || again.Fingerprint() != tr.Fingerprint() {
			t.Fatalf("accepted CA certificate does not survive re-encoding: %v", err)
		}
		if ValidateName(tr.Mesh) != nil || !tr.Prefix().IsValid() {
			t.Fatalf("accepted CA with mesh %q prefix %s", tr.Mesh, tr.Prefix())
		}
	})
}

func FuzzParseCAKey(f *testing.F) {
	dir := f.TempDir()
	if err := fixedCA(f).Save(dir+"/ca.key", dir+"/ca.crt"); err != nil {
		f.Fatal(err)
	}
	key, err := os.ReadFile(dir + "/ca.key")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(key)
	f.Add(fixedCA(f).PEM)
	f.Add(key[:len(key)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseCAKey(data)
		if err != nil {
			if k != nil {
				t.Fatalf("rejected input returned a key")
			}
			return
		}
		if len(k) != 64 {
			t.Fatalf("accepted a %d-byte Ed25519 key", len(k))
		}
	})
}
