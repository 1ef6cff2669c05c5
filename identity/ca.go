package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"regexp"
	"time"

	"github.com/meshnode/meshnode/mesh/defaults"
)

// CAPublic is the mesh CA's Ed25519 public key.
type CAPublic [ed25519.PublicKeySize]byte

// KeyID is the first 8 bytes of SHA-256 of the CA key; tickets and
// revocations carry it so a verifier can tell which CA they claim.
func (k CAPublic) KeyID() [8]byte {
	sum := sha256.Sum256(k[:])
	var id [8]byte
	copy(id[:], sum[:8])
	return id
}

// String is "ca:" followed by 64 hex digits.
func (k CAPublic) String() string { return "ca:" + hex.EncodeToString(k[:]) }

// CAValidity is how long a mesh CA certificate is valid.
const CAValidity = defaults.CAValidity

var meshNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateName checks a node or mesh name: a lowercase DNS label of at most
// 63 characters (it becomes <name>.<mesh> in certificates).
func ValidateName(name string) error {
	if !meshNameRE.MatchString(name) {
		return fmt.Errorf("name %q: want a DNS label: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'", name)
	}
	return nil
}

// Trust is the public half of the mesh CA that every member holds: what it
// needs to verify tickets, certificates and revocations.
type Trust struct {
	Mesh   string
	Public CAPublic
	Cert   *x509.Certificate
	PEM    []byte
	pool   *x509.CertPool
}

// ParseTrust reads a CA certificate (PEM) and checks it is a meshnode CA.
func ParseTrust(pemBytes []byte) (*Trust, error) {
	cert, err := parseOnePEMCert(pemBytes)
	if err != nil {
		return nil, err
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("CA certificate: key is %T, want Ed25519", cert.PublicKey)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, errors.New("CA certificate: not marked as a CA")
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("CA certificate: not self-signed: %w", err)
	}
	if len(cert.Subject.Organization) != 1 {
		return nil, errors.New("CA certificate: subject has no mesh name (O=)")
	}
	mesh := cert.Subject.Organization[0]
	if err := ValidateName(mesh); err != nil {
		return nil, fmt.Errorf("CA certificate: mesh %w", err)
	}
	t := &Trust{Mesh: mesh, Cert: cert, PEM: pemBytes, pool: x509.NewCertPool()}
	copy(t.Public[:], pub)
	t.pool.AddCert(cert)
	return t, nil
}

// LoadTrust reads the CA certificate file at path.
func LoadTrust(path string) (*Trust, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mesh CA certificate: %w", err)
	}
	t, err := ParseTrust(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Prefix is the mesh's overlay /48.
func (t *Trust) Prefix() netip.Prefix { return MeshPrefix(t.Public) }

// Pool is a certificate pool holding only the mesh CA.
func (t *Trust) Pool() *x509.CertPool { return t.pool }

// Fingerprint is SHA-256 of the CA certificate (DER); join tokens carry it
// so a joiner can pin the admitting node's TLS certificate chain.
func (t *Trust) Fingerprint() [32]byte { return sha256.Sum256(t.Cert.Raw) }

// CA is the mesh certificate authority: the key that admits members.
type CA struct {
	*Trust
	key ed25519.PrivateKey
}

// String names the mesh and the CA public key, never the private key.
func (ca CA) String() string {
	if ca.Trust == nil {
		return "identity.CA(nil)"
	}
	return "identity.CA(" + ca.Mesh + " " + ca.Public.String() + ")"
}

// Format prints String for every verb, so that no fmt verb reaches the
// private key.
func (ca CA) Format(f fmt.State, verb rune) { io.WriteString(f, ca.String()) }

// NewCA makes a fresh CA for the named mesh, valid from now for CAValidity.
func NewCA(mesh string, now time.Time) (*CA, error) {
	if err := ValidateName(mesh); err != nil {
		return nil, fmt.Errorf("mesh %w", err)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "meshnode CA " + mesh, Organization: []string{mesh}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	t, err := ParseTrust(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	if err != nil {
		return nil, err
	}
	return &CA{Trust: t, key: key}, nil
}

// Save writes the CA key (0600, never overwriting) and certificate.
func (ca *CA) Save(keyPath, certPath string) error {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("encode CA key: %w", err)
	}
	if err := writeFileExclusive(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("mesh CA key: %w", err)
	}
	return WriteFileAtomic(certPath, ca.PEM, 0o644)
}

// LoadCA reads a CA key and certificate and checks that they belong together.
func LoadCA(keyPath, certPath string) (*CA, error) {
	t, err := LoadTrust(certPath)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(keyPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("mesh CA key %s does not exist (only admin members hold it): %w", keyPath, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("mesh CA key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("mesh CA key %s: %w", keyPath, err)
	}
	if err := checkPrivate(keyPath, fi); err != nil {
		return nil, fmt.Errorf("mesh CA key %w", err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("mesh CA key %s: %w", keyPath, err)
	}
	key, err := ParseCAKey(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("mesh CA key %s: %w", keyPath, err)
	}
	if !bytes.Equal(key.Public().(ed25519.PublicKey), t.Public[:]) {
		return nil, fmt.Errorf("mesh CA key %s does not match certificate %s", keyPath, certPath)
	}
	return &CA{Trust: t, key: key}, nil
}

// ParseCAKey decodes a PEM PKCS#8 Ed25519 private key.
func ParseCAKey(pemBytes []byte) (ed25519.PrivateKey, error) {
	blk, rest := pem.Decode(pemBytes)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the PEM block")
	}
	if blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block is %q, want PRIVATE KEY", blk.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want Ed25519", k)
	}
	return ek, nil
}

// sign signs a domain-separated message with the CA key.
func (ca *CA) sign(msg []byte) []byte { return ed25519.Sign(ca.key, msg) }

// verifyCA checks a CA signature made by sign.
func (t *Trust) verify(msg, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(ed25519.PublicKey(t.Public[:]), msg, sig)
}

func parseOnePEMCert(b []byte) (*x509.Certificate, error) {
	blk, rest := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("certificate: no PEM block")
	}
	if blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certificate: PEM block is %q, want CERTIFICATE", blk.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("certificate: trailing data after the PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	return c, nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("identity: random serial: " + err.Error())
	}
	return n.Add(n, big.NewInt(1))
}
