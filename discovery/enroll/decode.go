package enroll

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/meshnode/meshnode/discovery"
	"github.com/meshnode/meshnode/identity"
)

// Requests come from anyone on the underlay, so they are decoded strictly
// and checked as far as possible before any state is consulted. Every
// refusal here is a precise 4xx (FuzzDecodeEnrollRequest holds them to it).

// readBody reads a capped request body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fail(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body exceeds %d bytes", maxRequestBody)
	}
	if err != nil {
		return nil, fail(http.StatusBadRequest, CodeMalformed, "reading request: %v", err)
	}
	return b, nil
}

// decodeStrict decodes exactly one JSON object with no unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// decodeJoinRequest parses and checks a join request as far as possible
// without state: shape, names, keys, endpoints and the signature. The
// WireGuard proof needs the admitting node's key: see checkJoinKeys.
func decodeJoinRequest(b []byte) (*joinRequest, *apiError) {
	var req joinRequest
	if err := decodeStrict(b, &req); err != nil {
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: %v", err)
	}
	switch {
	case req.Version != joinVersion:
		return nil, fail(http.StatusBadRequest, CodeVersion, "join request version %d, this node speaks %d", req.Version, joinVersion)
	case req.Node.IsZero():
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: no identity key")
	case req.WireGuard.IsZero():
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: no WireGuard key")
	case req.Token == "" || len(req.Token) > maxTokenLength:
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: no token or an overlong one")
	case len(req.Signature) != ed25519.SignatureSize:
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: signature is %d bytes, want %d", len(req.Signature), ed25519.SignatureSize)
	case len(req.WireGuardProof) != identity.WireGuardProofSize:
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: WireGuard proof is %d bytes, want %d", len(req.WireGuardProof), identity.WireGuardProofSize)
	}
	if err := identity.ValidateName(req.Name); err != nil {
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: %v", err)
	}
	if err := discovery.CheckEndpoints(req.Endpoints); err != nil {
		return nil, fail(http.StatusBadRequest, CodeMalformed, "join request: %v", err)
	}
	if !req.Node.Verify(req.signed(), req.Signature) {
		return nil, fail(http.StatusBadRequest, CodeBadSignature, "join request is not signed by identity %s", req.Node.ShortString())
	}
	return &req, nil
}

// decodeHelloRequest parses a hello request and its ticket; the ticket's
// CA signature and the request's signature are checked by the caller,
// which holds the trust.
func decodeHelloRequest(b []byte) (*helloRequest, *identity.Ticket, *apiError) {
	var req helloRequest
	if err := decodeStrict(b, &req); err != nil {
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request: %v", err)
	}
	switch {
	case req.Version != version:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request version %d, this node speaks %d", req.Version, version)
	case len(req.Challenge) != challengeSize:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request: challenge is %d bytes, want %d", len(req.Challenge), challengeSize)
	case len(req.Signature) != ed25519.SignatureSize:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request: signature is %d bytes, want %d", len(req.Signature), ed25519.SignatureSize)
	}
	if err := discovery.CheckEndpoints(req.Endpoints); err != nil {
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request: %v", err)
	}
	t, err := identity.ParseTicket(req.Ticket)
	if err != nil {
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "hello request: %v", err)
	}
	return &req, t, nil
}

// decodeGossipKeyRequest parses a gossip key request and its ticket; the
// caller checks the signatures, as for hello.
func decodeGossipKeyRequest(b []byte) (*gossipKeyRequest, *identity.Ticket, *apiError) {
	var req gossipKeyRequest
	if err := decodeStrict(b, &req); err != nil {
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "gossip key request: %v", err)
	}
	switch {
	case req.Version != version:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "gossip key request version %d, this node speaks %d", req.Version, version)
	case len(req.Challenge) != challengeSize:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "gossip key request: challenge is %d bytes, want %d", len(req.Challenge), challengeSize)
	case len(req.Signature) != ed25519.SignatureSize:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "gossip key request: signature is %d bytes, want %d", len(req.Signature), ed25519.SignatureSize)
	}
	t, err := identity.ParseTicket(req.Ticket)
	if err != nil {
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "gossip key request: %v", err)
	}
	return &req, t, nil
}

// decodeRenewRequest parses a renew request and its ticket; as for hello
// the caller checks the signatures, and also how long ago the ticket
// expired.
func decodeRenewRequest(b []byte) (*renewRequest, *identity.Ticket, *apiError) {
	var req renewRequest
	if err := decodeStrict(b, &req); err != nil {
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "renew request: %v", err)
	}
	switch {
	case req.Version != version:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "renew request version %d, this node speaks %d", req.Version, version)
	case len(req.Challenge) != challengeSize:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "renew request: challenge is %d bytes, want %d", len(req.Challenge), challengeSize)
	case len(req.Signature) != ed25519.SignatureSize:
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "renew request: signature is %d bytes, want %d", len(req.Signature), ed25519.SignatureSize)
	}
	if err := discovery.CheckEndpoints(req.Endpoints); err != nil {
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "renew request: %v", err)
	}
	t, err := identity.ParseTicket(req.Ticket)
	if err != nil {
		return nil, nil, fail(http.StatusBadRequest, CodeMalformed, "renew request: %v", err)
	}
	return &req, t, nil
}
