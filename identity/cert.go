package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/meshnode/meshnode/mesh/defaults"
)

// NodeCertValidity is the default lifetime of a node certificate; nodes
// renew before it runs out.
const NodeCertValidity = defaults.NodeCertValidity

// RouteServerName is the DNS name every node certificate carries so that
// NATS routes dialled by gossiped IP address verify against one fixed name.
func RouteServerName(mesh string) string { return "route." + mesh }

// NodeCert is a node's x509 certificate: the identity key certified by the
// mesh CA for TLS (NATS routes, NATS clients, the enrollment endpoint).
type NodeCert struct {
	Cert *x509.Certificate
	PEM  []byte
}

// IssueNodeCert certifies a node's identity key: IP SAN = its overlay
// address, DNS SANs = <name>.<mesh> and route.<mesh>, server and client
// auth.
func (ca *CA) IssueNodeCert(name string, node NodePublic, now time.Time, validity time.Duration) (*NodeCert, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if validity <= 0 {
		return nil, fmt.Errorf("certificate validity must be positive, got %s", validity)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{ca.Mesh}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name + "." + ca.Mesh, RouteServerName(ca.Mesh)},
		IPAddresses:  []net.IP{net.IP(OverlayAddr(ca.Prefix(), node).AsSlice())},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, node.Ed25519(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %q: %w", name, err)
	}
	return ParseNodeCert(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.Trust, now)
}

// ParseNodeCert decodes a node certificate and verifies it against the mesh
// CA at time now.
func ParseNodeCert(pemBytes []byte, trust *Trust, now time.Time) (*NodeCert, error) {
	return parseNodeCert(pemBytes, trust, now, false)
}

// ParseNodeCertExpired is ParseNodeCert that also accepts a certificate
// whose time ran out (it is then verified as of its last valid second):
// a node loads its own expired certificate only to know that it must
// renew, never to present it as valid.
func ParseNodeCertExpired(pemBytes []byte, trust *Trust, now time.Time) (*NodeCert, error) {
	return parseNodeCert(pemBytes, trust, now, true)
}

func parseNodeCert(pemBytes []byte, trust *Trust, now time.Time, allowExpired bool) (*NodeCert, error) {
	c, err := parseOnePEMCert(pemBytes)
	if err != nil {
		return nil, err
	}
	if _, ok := c.PublicKey.(ed25519.PublicKey); !ok {
		return nil, fmt.Errorf("node certificate: key is %T, want Ed25519", c.PublicKey)
	}
	// The CA certificate verifies against itself as a one-element chain;
	// without this check it would pass for a node certificate naming the CA
	// key.
	if c.IsCA {
		return nil, fmt.Errorf("node certificate %q: is a CA certificate", c.Subject.CommonName)
	}
	if allowExpired && now.After(c.NotAfter) {
		now = c.NotAfter
	}
	if _, err := c.Verify(x509.VerifyOptions{
		Roots:       trust.Pool(),
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("node certificate %q: %w", c.Subject.CommonName, err)
	}
	return &NodeCert{Cert: c, PEM: pemBytes}, nil
}

// LoadNodeCert reads and verifies the node certificate at path.
func LoadNodeCert(path string, trust *Trust, now time.Time) (*NodeCert, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	nc, err := ParseNodeCert(b, trust, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nc, nil
}

// Node is the identity key the certificate certifies.
func (nc *NodeCert) Node() NodePublic {
	k, _ := CertNode(nc.Cert)
	return k
}

// CertNode is the identity key an x509 certificate certifies, for a
// certificate a TLS peer presented; false for nil or a key that is not
// Ed25519.
func CertNode(c *x509.Certificate) (NodePublic, bool) {
	var k NodePublic
	if c == nil {
		return k, false
	}
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok || len(pub) != len(k) {
		return k, false
	}
	copy(k[:], pub)
	return k, true
}

// TLSCertificate pairs the node certificate with the identity key. It fails
// when the certificate was issued for another identity.
func (id *Identity) TLSCertificate(nc *NodeCert) (tls.Certificate, error) {
	if nc.Node() != id.Public() {
		return tls.Certificate{}, errors.New("node certificate was issued for another identity")
	}
	return tls.Certificate{Certificate: [][]byte{nc.Cert.Raw}, PrivateKey: id.Signer(), Leaf: nc.Cert}, nil
}

// ServerTLS presents the node certificate and, when clients present one,
// verifies it against the mesh CA (client TLS, enrollment endpoint).
func ServerTLS(cert tls.Certificate, trust *Trust) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    trust.Pool(),
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
}

// RouteTLS is the mutual TLS of NATS routes: both ends present node
// certificates and both verify the other against the mesh CA alone, dialling
// the fixed route server name so routes to gossiped IP addresses verify.
// RootCAs and ClientCAs are set explicitly: Go-built server options do not
// fill them in the way the config-file parser does.
func RouteTLS(cert tls.Certificate, trust *Trust) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      trust.Pool(),
		ClientCAs:    trust.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ServerName:   RouteServerName(trust.Mesh),
	}
}

// ClientTLS trusts only the mesh CA; cert, when non-nil, is presented as the
// client certificate.
func ClientTLS(trust *Trust, cert *tls.Certificate) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: trust.Pool()}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// CertHolder is the node's current TLS certificate, swapped in place when
// the node renews: TLS configs made from it ask it on every handshake
// (GetCertificate, GetClientCertificate), so new connections present the
// new certificate while established ones, NATS routes above all, are left
// alone. Those callbacks survive tls.Config.Clone, which nats-server does
// before each handshake it dials.
type CertHolder struct {
	p atomic.Pointer[tls.Certificate]
}

// NewCertHolder holds cert.
func NewCertHolder(cert tls.Certificate) *CertHolder {
	h := new(CertHolder)
	h.Set(cert)
	return h
}

// Set makes cert the one presented from the next handshake on.
func (h *CertHolder) Set(cert tls.Certificate) { h.p.Store(&cert) }

// Get is the current certificate.
func (h *CertHolder) Get() *tls.Certificate { return h.p.Load() }

func (h *CertHolder) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.p.Load(), nil
}

func (h *CertHolder) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return h.p.Load(), nil
}

// ServerTLS is the package-level ServerTLS presenting the held
// certificate.
func (h *CertHolder) ServerTLS(trust *Trust) *tls.Config {
	c := ServerTLS(tls.Certificate{}, trust)
	c.Certificates, c.GetCertificate = nil, h.getCertificate
	return c
}

// RouteTLS is the package-level RouteTLS presenting the held certificate
// on both ends of a route.
func (h *CertHolder) RouteTLS(trust *Trust) *tls.Config {
	c := RouteTLS(tls.Certificate{}, trust)
	c.Certificates = nil
	c.GetCertificate, c.GetClientCertificate = h.getCertificate, h.getClientCertificate
	return c
}
