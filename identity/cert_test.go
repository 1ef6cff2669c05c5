package identity

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// node is an enrolled test node: identity, node certificate and the TLS
// certificate pairing them.
type node struct {
	id   *Identity
	cert *NodeCert
	tls  tls.Certificate
}

func newNode(t *testing.T, ca *CA, name string) node {
	t.Helper()
	id := newID(t)
	nc, err := ca.IssueNodeCert(name, id.Public(), t0, NodeCertValidity)
	if err != nil {
		t.Fatalf("IssueNodeCert(%q): %v", name, err)
	}
	tc, err := id.TLSCertificate(nc)
	if err != nil {
		t.Fatalf("TLSCertificate: %v", err)
	}
	return node{id, nc, tc}
}

// atT0 pins a TLS config's clock so the handshake tests do not depend on
// the wall clock (the certificates are issued at t0).
func atT0(c *tls.Config) *tls.Config {
	c.Time = func() time.Time { return t0.Add(time.Hour) }
	return c
}

// handshake runs a TLS handshake over an in-memory pipe. After a successful
// handshake the server writes a byte and the client reads it, so a
// rejection the server sends after the client's last flight (TLS 1.3 client
// certificates) reaches the client as an error.
func handshake(t *testing.T, client, server *tls.Config) (cerr, serr error, cst, sst tls.ConnectionState) {
	t.Helper()
	a, b := net.Pipe()
	deadline := time.Now().Add(20 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	defer a.Close()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := tls.Server(b, server)
		if serr = s.Handshake(); serr == nil {
			_, serr = s.Write([]byte{1})
		}
		sst = s.ConnectionState()
		b.Close()
	}()
	c := tls.Client(a, client)
	if cerr = c.Handshake(); cerr == nil {
		_, cerr = io.ReadFull(c, make([]byte, 1))
	}
	cst = c.ConnectionState()
	a.Close()
	<-done
	return cerr, serr, cst, sst
}

func TestNodeCertContents(t *testing.T) {
	ca := newCA(t, "acme")
	n := newNode(t, ca, "alpha")
	c := n.cert.Cert
	addr := OverlayAddr(ca.Prefix(), n.id.Public())

	if len(c.IPAddresses) != 1 {
		t.Fatalf("IP SANs %v, want exactly the overlay address", c.IPAddresses)
	}
	if got, ok := netip.AddrFromSlice(c.IPAddresses[0]); !ok || got.Unmap() != addr {
		t.Errorf("IP SAN %s, want %s", c.IPAddresses[0], addr)
	}
	wantDNS := []string{"alpha.acme", "route.acme"}
	if got := slices.Sorted(slices.Values(c.DNSNames)); !slices.Equal(got, wantDNS) {
		t.Errorf("DNS SANs %v, want %v", c.DNSNames, wantDNS)
	}
	if RouteServerName("acme") != "route.acme" {
		t.Errorf("RouteServerName = %s", RouteServerName("acme"))
	}
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if !slices.Contains(c.ExtKeyUsage, eku) {
			t.Errorf("EKUs %v lack %v", c.ExtKeyUsage, eku)
		}
	}
	if c.IsCA {
		t.Errorf("node certificate is a CA")
	}
	if k, ok := CertNode(c); !ok || k != n.id.Public() || n.cert.Node() != k {
		t.Errorf("CertNode = %s, %v; want %s", k.ShortString(), ok, n.id.Public().ShortString())
	}
	if _, ok := CertNode(nil); ok {
		t.Errorf("CertNode(nil) succeeded")
	}
	if _, ok := CertNode(&x509.Certificate{PublicKey: &ecdsa.PublicKey{}}); ok {
		t.Errorf("CertNode of an ECDSA certificate succeeded")
	}
	if got := c.NotAfter.Sub(t0); got != NodeCertValidity {
		t.Errorf("certificate valid for %s, want %s", got, NodeCertValidity)
	}
	if !c.NotBefore.Before(t0) {
		t.Errorf("certificate not yet valid when issued")
	}
	if n.cert.Node() != n.id.Public() {
		t.Errorf("certificate key is not the identity key")
	}
	if c.Subject.CommonName != "alpha" || c.Issuer.CommonName != ca.Cert.Subject.CommonName {
		t.Errorf("subject %v issuer %v", c.Subject, c.Issuer)
	}
	// The certificate verifies for every name a peer dials.
	for _, name := range []string{"alpha.acme", "route.acme", addr.String()} {
		if _, err := c.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.Pool(), CurrentTime: t0}); err != nil {
			t.Errorf("certificate does not verify for %s: %v", name, err)
		}
	}
	// Two certificates for one node have different serials.
	again, err := ca.IssueNodeCert("alpha", n.id.Public(), t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if again.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Errorf("two certificates share serial %s", c.SerialNumber)
	}
	if _, err := ca.IssueNodeCert("Alpha", n.id.Public(), t0, time.Hour); err == nil {
		t.Errorf("IssueNodeCert accepted a bad name")
	}
	if _, err := ca.IssueNodeCert("alpha", n.id.Public(), t0, 0); err == nil {
		t.Errorf("IssueNodeCert accepted a zero validity")
	}
}

func TestParseNodeCert(t *testing.T) {
	ca, foreign := newCA(t, "acme"), newCA(t, "acme")
	n := newNode(t, ca, "alpha")
	if _, err := ParseNodeCert(n.cert.PEM, ca.Trust, t0); err != nil {
		t.Fatalf("ParseNodeCert(own): %v", err)
	}
	for _, tc := range []struct {
		name  string
		pem   []byte
		trust *Trust
		now   time.Time
		want  string
	}{
		{"foreign CA", n.cert.PEM, foreign.Trust, t0, "alpha"},
		{"expired", n.cert.PEM, ca.Trust, t0.Add(NodeCertValidity + time.Hour), "expired"},
		{"not yet valid", n.cert.PEM, ca.Trust, t0.Add(-time.Hour), "alpha"},
		{"CA certificate", ca.PEM, ca.Trust, t0, "is a CA certificate"},
		{"garbage", []byte("junk"), ca.Trust, t0, "no PEM block"},
		{"trailing data", append(append([]byte{}, n.cert.PEM...), 'x'), ca.Trust, t0, "trailing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := ParseNodeCert(tc.pem, tc.trust, tc.now)
			if nc != nil {
				t.Errorf("ParseNodeCert returned a certificate with an error")
			}
			wantErr(t, err, tc.want)
		})
	}
	// LoadNodeCert names the file.
	path := filepath.Join(t.TempDir(), "node.crt")
	_, err := LoadNodeCert(path, ca.Trust, t0)
	wantErr(t, err, path)
	os.WriteFile(path, n.cert.PEM, 0o644)
	if _, err := LoadNodeCert(path, ca.Trust, t0); err != nil {
		t.Errorf("LoadNodeCert: %v", err)
	}
	_, err = LoadNodeCert(path, foreign.Trust, t0)
	wantErr(t, err, path)
}

func TestTLSCertificateWrongIdentity(t *testing.T) {
	ca := newCA(t, "acme")
	n := newNode(t, ca, "alpha")
	if _, err := newID(t).TLSCertificate(n.cert); err == nil {
		t.Fatalf("TLSCertificate paired a certificate with another identity's key")
	}
}

func TestTLSHandshakes(t *testing.T) {
	ca, foreign := newCA(t, "acme"), newCA(t, "acme")
	alpha, beta := newNode(t, ca, "alpha"), newNode(t, ca, "beta")
	mallory := newNode(t, foreign, "mallory") // right mesh name, wrong CA
	alphaAddr := OverlayAddr(ca.Prefix(), alpha.id.Public()).String()

	withName := func(c *tls.Config, name string) *tls.Config { c.ServerName = name; return c }

	for _, tc := range []struct {
		name           string
		client, server *tls.Config
		ok             bool
		peerAtServer   *node  // the client certificate the server must see
		rejector       string // on failure, the side that must refuse: "client" or "server"
	}{
		{"client → server by node name",
			withName(ClientTLS(ca.Trust, nil), "alpha.acme"), ServerTLS(alpha.tls, ca.Trust), true, nil, ""},
		{"client → server by overlay address",
			withName(ClientTLS(ca.Trust, nil), alphaAddr), ServerTLS(alpha.tls, ca.Trust), true, nil, ""},
		{"client with certificate → server",
			withName(ClientTLS(ca.Trust, &beta.tls), "alpha.acme"), ServerTLS(alpha.tls, ca.Trust), true, &beta, ""},
		{"client → server under the wrong name",
			withName(ClientTLS(ca.Trust, nil), "beta.acme"), ServerTLS(alpha.tls, ca.Trust), false, nil, "client"},
		{"client → server with a foreign-CA certificate",
			withName(ClientTLS(ca.Trust, nil), "mallory.acme"), ServerTLS(mallory.tls, foreign.Trust), false, nil, "client"},
		{"foreign-CA client certificate → server",
			withName(ClientTLS(ca.Trust, &mallory.tls), "alpha.acme"), ServerTLS(alpha.tls, ca.Trust), false, nil, "server"},
		{"route ↔ route",
			RouteTLS(beta.tls, ca.Trust), RouteTLS(alpha.tls, ca.Trust), true, &beta, ""},
		{"route: foreign-CA dialler",
			RouteTLS(mallory.tls, foreign.Trust), RouteTLS(alpha.tls, ca.Trust), false, nil, "client"},
		{"route: foreign-CA dialler trusting our CA",
			RouteTLS(mallory.tls, ca.Trust), RouteTLS(alpha.tls, ca.Trust), false, nil, "server"},
		{"route: foreign-CA listener",
			RouteTLS(beta.tls, ca.Trust), RouteTLS(mallory.tls, ca.Trust), false, nil, "client"},
		{"route: client without a certificate",
			withName(ClientTLS(ca.Trust, nil), RouteServerName("acme")), RouteTLS(alpha.tls, ca.Trust), false, nil, "server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cerr, serr, cst, sst := handshake(t, atT0(tc.client), atT0(tc.server))
			if tc.ok {
				if cerr != nil || serr != nil {
					t.Fatalf("handshake failed: client %v, server %v", cerr, serr)
				}
				if len(cst.PeerCertificates) == 0 || !cst.PeerCertificates[0].Equal(alpha.cert.Cert) {
					t.Errorf("client did not see alpha's certificate")
				}
				if cst.Version != tls.VersionTLS13 {
					t.Errorf("negotiated %#x, want TLS 1.3", cst.Version)
				}
				switch {
				case tc.peerAtServer == nil && len(sst.PeerCertificates) != 0:
					t.Errorf("server saw a client certificate it was not given")
				case tc.peerAtServer != nil && (len(sst.VerifiedChains) == 0 || !sst.PeerCertificates[0].Equal(tc.peerAtServer.cert.Cert)):
					t.Errorf("server did not verify the client's certificate")
				}
				return
			}
			if cerr == nil && serr == nil {
				t.Fatalf("handshake succeeded, want a failure")
			}
			// The refusing side fails on its own check; the other side
			// only hears an alert.
			if own := map[string]error{"client": cerr, "server": serr}[tc.rejector]; own == nil || strings.Contains(own.Error(), "remote error") {
				t.Errorf("the %s did not refuse the handshake itself: client %v; server %v", tc.rejector, cerr, serr)
			}
			t.Logf("rejected: client %v; server %v", cerr, serr)
		})
	}

	// The route config pins what the design requires.
	rc := RouteTLS(alpha.tls, ca.Trust)
	if rc.ClientAuth != tls.RequireAndVerifyClientCert || rc.RootCAs == nil || rc.ClientCAs == nil || rc.ServerName != "route.acme" {
		t.Errorf("RouteTLS: ClientAuth %v RootCAs %v ClientCAs %v ServerName %q", rc.ClientAuth, rc.RootCAs != nil, rc.ClientCAs != nil, rc.ServerName)
	}
}
