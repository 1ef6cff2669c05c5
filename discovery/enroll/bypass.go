package enroll

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// carriesValidToken lets a join with a token this node would accept through
// a rate limit that others' failures from the same prefix (a shared NAT, a
// campus /64) or from everywhere (a flood) have set: the limit is on
// failures, and a valid token is no failure. The look is one JSON decode
// of at most maxRequestBody bytes and a hash lookup in the invites file,
// less than the TLS handshake the caller already paid for, so it is not
// itself limited (a budget for it would be the flood's to spend). The body
// is put back for join, which checks everything again.
func (s *Server) carriesValidToken(w http.ResponseWriter, r *http.Request, now time.Time) bool {
	if r.URL.Path != "/v2/join" || r.Method != http.MethodPost || s.cfg.Invites == nil {
		return false
	}
	body, aerr := readBody(w, r)
	if aerr != nil {
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req struct {
		Token string              `json:"token"`
		Name  string              `json:"name"`
		Node  identity.NodePublic `json:"node"`
	}
	if json.Unmarshal(body, &req) != nil || req.Token == "" {
		return false
	}
	// CheckFor: a retry after a lost answer is as good as a fresh token.
	_, err := s.cfg.Invites.CheckFor(req.Token, req.Node, req.Name, now)
	return err == nil
}

// truncate shortens an error message that may quote the caller's input.
func truncate(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "…(truncated)"
}
