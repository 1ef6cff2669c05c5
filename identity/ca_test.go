package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"alpha", true},
		{"node-1", true},
		{"0", true},
		{"9lives", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-a", false},
		{"a-", false},
		{"Alpha", false},
		{"a.b", false},
		{"a_b", false},
		{"a b", false},
		{"ä", false},
		{"a\n", false},
		{"alpha\x00", false},
	} {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestNewCA(t *testing.T) {
	ca := newCA(t, "acme")
	c := ca.Cert
	if ca.Mesh != "acme" || len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "acme" {
		t.Errorf("mesh name not in the subject: %v", c.Subject)
	}
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("CA certificate is not marked as a CA")
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate cannot sign certificates")
	}
	if got := c.NotAfter.Sub(t0); got != CAValidity {
		t.Errorf("CA valid for %s after now, want %s", got, CAValidity)
	}
	if CAValidity < 10*365*24*time.Hour {
		t.Errorf("CAValidity %s is under 10 years", CAValidity)
	}
	if !c.NotBefore.Before(t0) {
		t.Errorf("CA not valid at creation time (NotBefore %s)", c.NotBefore)
	}
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok || string(pub) != string(ca.Public[:]) {
		t.Errorf("certificate key %T does not match CAPublic", c.PublicKey)
	}
	if ca.Fingerprint() != sha256.Sum256(c.Raw) {
		t.Errorf("Fingerprint is not SHA-256 of the DER certificate")
	}
	if ca.Prefix() != MeshPrefix(ca.Public) {
		t.Errorf("Trust.Prefix differs from MeshPrefix")
	}
	if !strings.HasPrefix(ca.Public.String(), "ca:") {
		t.Errorf("CAPublic.String = %s", ca.Public)
	}
	// Two CAs: two keys, two prefixes.
	if other := newCA(t, "acme"); other.Public == ca.Public || other.Prefix() == ca.Prefix() {
		t.Errorf("two NewCA calls share a key or prefix")
	}
	for _, bad := range []string{"", "Acme", "a.b", strings.Repeat("x", 64)} {
		if _, err := NewCA(bad, t0); err == nil {
			t.Errorf("NewCA(%q) accepted a bad mesh name", bad)
		}
	}
}

func TestCASaveLoad(t *testing.T) {
	dir := t.TempDir()
	keyPath, certPath := filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.crt")
	ca := newCA(t, "acme")
	if err := ca.Save(keyPath, certPath); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if m := fileMode(t, keyPath); m != 0o600 {
		t.Errorf("CA key mode %#o, want 0600", m)
	}
	if m := fileMode(t, certPath); m != 0o644 {
		t.Errorf("CA certificate mode %#o, want 0644 (public)", m)
	}
	loaded, err := LoadCA(keyPath, certPath)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if loaded.Public != ca.Public || loaded.Mesh != "acme" || loaded.Fingerprint() != ca.Fingerprint() {
		t.Errorf("loaded CA differs: %s vs %s", loaded, ca)
	}
	// The loaded CA signs what the original trust accepts.
	id := newID(t)
	if err := issue(t, loaded, "beta", id, 0).Verify(ca.Trust, t0); err != nil {
		t.Errorf("ticket from the loaded CA does not verify: %v", err)
	}
	tr, err := LoadTrust(certPath)
	if err != nil || tr.Public != ca.Public {
		t.Errorf("LoadTrust = %v", err)
	}

	// Save never overwrites the key.
	before := snapshot(t, dir)
	other := newCA(t, "acme")
	err = other.Save(keyPath, filepath.Join(dir, "other.crt"))
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Save over an existing key: %v, want fs.ErrExist", err)
	}
	wantErr(t, err, keyPath)
	if after := snapshot(t, dir); !equalMaps(before, after) {
		t.Errorf("refused Save changed the directory")
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestLoadCAErrors(t *testing.T) {
	ca, other := newCA(t, "acme"), newCA(t, "acme")
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})

	keyPEM := func(c *CA) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(c.key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	for _, tc := range []struct {
		name    string
		key     []byte // nil: no key file
		keyMode os.FileMode
		cert    []byte // nil: no cert file
		want    []string
		notExit bool // errors.Is(err, fs.ErrNotExist)
	}{
		{"mismatched key and cert", keyPEM(other), 0o600, ca.PEM, []string{"ca.key", "does not match", "ca.crt"}, false},
		{"missing key", nil, 0, ca.PEM, []string{"ca.key", "does not exist"}, true},
		{"missing cert", keyPEM(ca), 0o600, nil, []string{"ca.crt"}, true},
		{"cert in the key file", ca.PEM, 0o600, ca.PEM, []string{"ca.key", `"CERTIFICATE"`, "PRIVATE KEY"}, false},
		{"key in the cert file", keyPEM(ca), 0o600, keyPEM(ca), []string{"ca.crt", "PRIVATE KEY", "want CERTIFICATE"}, false},
		{"world-readable key", keyPEM(ca), 0o644, ca.PEM, []string{"ca.key", "chmod 600"}, false},
		{"group-readable key", keyPEM(ca), 0o640, ca.PEM, []string{"ca.key", "chmod 600"}, false},
		{"garbage key", []byte("hello\n"), 0o600, ca.PEM, []string{"ca.key", "no PEM block"}, false},
		{"empty key", []byte{}, 0o600, ca.PEM, []string{"ca.key", "no PEM block"}, false},
		{"trailing data after key", append(keyPEM(ca), "junk"...), 0o600, ca.PEM, []string{"ca.key", "trailing"}, false},
		{"ECDSA key", ecPEM, 0o600, ca.PEM, []string{"ca.key", "want Ed25519"}, false},
		{"corrupt PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), 0o600, ca.PEM, []string{"ca.key"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			keyPath, certPath := filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.crt")
			if tc.key != nil {
				if err := os.WriteFile(keyPath, tc.key, tc.keyMode); err != nil {
					t.Fatal(err)
				}
				os.Chmod(keyPath, tc.keyMode)
			}
			if tc.cert != nil {
				if err := os.WriteFile(certPath, tc.cert, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := LoadCA(keyPath, certPath)
			if got != nil {
				t.Errorf("LoadCA returned a CA with an error")
			}
			wantErr(t, err, tc.want...)
			if errors.Is(err, fs.ErrNotExist) != tc.notExit {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v (LoadMember relies on it to tell admins from members)", !tc.notExit, tc.notExit)
			}
		})
	}
}

// selfSigned builds a certificate PEM from a template, for ParseTrust's
// rejections.
func selfSigned(t *testing.T, tmpl *x509.Certificate, pub any, key any, parent *x509.Certificate) []byte {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func caTemplate(mesh ...string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "test", Organization: mesh},
		NotBefore:             t0.Add(-time.Hour),
		NotAfter:              t0.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
}

func TestParseTrustErrors(t *testing.T) {
	ca := newCA(t, "acme")
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	notCA := caTemplate("acme")
	notCA.IsCA = false
	nc, err := ca.IssueNodeCert("alpha", newID(t).Public(), t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A CA certificate for our key but signed by another CA's key.
	crossSigned := selfSigned(t, caTemplate("acme"), pub, ca.key, ca.Cert)

	for _, tc := range []struct {
		name string
		pem  []byte
		want string
	}{
		{"empty", nil, "no PEM block"},
		{"garbage", []byte("garbage"), "no PEM block"},
		{"wrong PEM type", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "want CERTIFICATE"},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), "certificate"},
		{"trailing data", append(append([]byte{}, ca.PEM...), "x"...), "trailing"},
		{"two certificates", append(append([]byte{}, ca.PEM...), ca.PEM...), "trailing"},
		{"ECDSA CA", selfSigned(t, caTemplate("acme"), &ecKey.PublicKey, ecKey, nil), "want Ed25519"},
		{"not a CA", selfSigned(t, notCA, pub, key, nil), "not marked as a CA"},
		{"node certificate", nc.PEM, "not marked as a CA"},
		{"no mesh name", selfSigned(t, caTemplate(), pub, key, nil), "no mesh name"},
		{"two mesh names", selfSigned(t, caTemplate("a", "b"), pub, key, nil), "no mesh name"},
		{"bad mesh name", selfSigned(t, caTemplate("Not A Label"), pub, key, nil), "mesh name"},
		{"not self-signed", crossSigned, "not self-signed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ParseTrust(tc.pem)
			if tr != nil {
				t.Errorf("ParseTrust returned a trust with an error")
			}
			wantErr(t, err, tc.want)
		})
	}

	// LoadTrust names the file.
	path := filepath.Join(t.TempDir(), "ca.crt")
	_, err = LoadTrust(path)
	wantErr(t, err, path)
	os.WriteFile(path, []byte("junk"), 0o644)
	_, err = LoadTrust(path)
	wantErr(t, err, path, "no PEM block")
}
