package enroll

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// peerChain keeps the certificate chain of the client's last TLS handshake
// that verified, so that a join can bind what the endpoint says to the
// certificate it presented.
type peerChain struct {
	mu    sync.Mutex
	certs []*x509.Certificate
}

// wrap returns verify, recording the chain when it passes.
func (p *peerChain) wrap(verify func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if err := verify(cs); err != nil {
			return err
		}
		p.mu.Lock()
		p.certs = slices.Clone(cs.PeerCertificates)
		p.mu.Unlock()
		return nil
	}
}

func (p *peerChain) get() []*x509.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.certs
}

// admitterKey asks the endpoint for its own ticket (GET /v2/ticket) and
// returns the WireGuard key a join must prove its own key toward.
func admitterKey(ctx context.Context, c *client, chain *peerChain, now time.Time) (identity.WireGuardPublic, error) {
	var tr ticketResponse
	if err := c.do(ctx, http.MethodGet, "/v2/ticket", nil, &tr); err != nil {
		return identity.WireGuardPublic{}, olderPeer(err)
	}
	wg, err := checkAdmitterTicket(tr.Ticket, chain.get(), now)
	if err != nil {
		return identity.WireGuardPublic{}, fmt.Errorf("enrollment endpoint %s: %w", c.peer, err)
	}
	return wg, nil
}

// checkAdmitterTicket verifies the ticket an endpoint sent as its own
// against the chain its TLS handshake presented (leaf first, the CA the
// token pins last, already checked by pinnedCA): signed by that CA, valid
// now, and issued to the identity of the leaf certificate. A member could
// otherwise hand out another member's ticket and make the newcomer prove
// its key toward a node it is not talking to.
func checkAdmitterTicket(raw []byte, chain []*x509.Certificate, now time.Time) (identity.WireGuardPublic, error) {
	if len(chain) < 2 {
		return identity.WireGuardPublic{}, errors.New("no verified certificate chain to check the ticket against")
	}
	t, err := identity.ParseTicket(raw)
	if err != nil {
		return identity.WireGuardPublic{}, fmt.Errorf("its ticket: %w", err)
	}
	trust, err := identity.ParseTrust(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[len(chain)-1].Raw}))
	if err != nil {
		return identity.WireGuardPublic{}, err
	}
	if err := t.Verify(trust, now); err != nil {
		return identity.WireGuardPublic{}, fmt.Errorf("its ticket: %w", err)
	}
	if node, ok := identity.CertNode(chain[0]); !ok || node != t.Node {
		return identity.WireGuardPublic{}, fmt.Errorf("it sent the ticket of %q (%s), not the one of the certificate it presented", t.Name, t.Node.ShortString())
	}
	return t.WireGuard, nil
}

// olderPeer explains a 404 from a peer that predates join v2.
func olderPeer(err error) error {
	var ee *Error
	if errors.As(err, &ee) && ee.Status == http.StatusNotFound && ee.Code == CodeNotFound {
		ee.Message += "; the peer runs an older meshnode that speaks only join v1: upgrade it first"
	}
	return err
}
