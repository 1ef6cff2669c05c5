package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
)

// apiBackend is what the local API needs from the node; an interface so the
// API is tested without a running mesh.
type apiBackend interface {
	Status() api.Status
	Invite(ttl time.Duration, roles identity.Roles) (string, error)
	Leave() error
	WriteMetrics(w io.Writer)
	Renew(ctx context.Context) (*RenewResult, error)
	Revoke(target, reason string) (api.Revoked, error)
}

// serveAPI serves the local API on a unix socket at path (0600) until ctx
// ends. A stale socket from a crashed run is removed; a live one means
// another daemon runs on this state directory, which is an error.
func serveAPI(ctx context.Context, path string, b apiBackend, log *slog.Logger) (func(), error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("local API socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("local API socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status())
	})
	mux.HandleFunc("POST "+api.PathInvite, func(w http.ResponseWriter, r *http.Request) {
		var req api.InviteRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, api.ErrorResponse{Error: "bad request: " + err.Error()})
			return
		}
		tok, err := b.Invite(req.TTL, req.Roles)
		if err != nil {
			writeJSON(w, http.StatusConflict, api.ErrorResponse{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, api.InviteResponse{Token: tok})
	})
	mux.HandleFunc("POST "+api.PathRevoke, func(w http.ResponseWriter, r *http.Request) {
		var req api.RevokeRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, api.ErrorResponse{Error: "bad request: " + err.Error()})
			return
		}
		rev, err := b.Revoke(req.Target, req.Reason)
		if err != nil {
			writeJSON(w, http.StatusConflict, api.ErrorResponse{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, rev)
	})
	mux.HandleFunc("POST "+api.PathLeave, func(w http.ResponseWriter, r *http.Request) {
		if err := b.Leave(); err != nil {
			writeJSON(w, http.StatusInternalServerError, api.ErrorResponse{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.Handle("GET "+api.PathMetrics, metricsHandler(b))
	mux.HandleFunc("POST "+api.PathRenew, func(w http.ResponseWriter, r *http.Request) {
		res, err := b.Renew(r.Context())
		if err != nil {
			writeJSON(w, http.StatusBadGateway, api.ErrorResponse{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, api.RenewResponse{From: res.From, TicketExpires: res.TicketExpires, CertExpires: res.CertExpires})
	})
	registerPhoneAPI(mux, b)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("local API stopped", "err", err)
		}
	}()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		os.Remove(path)
	}
	return stop, nil
}

func removeStaleSocket(path string) error {
	if _, err := os.Lstat(path); err != nil {
		return nil
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("local API socket %s answers: another meshnode is running on this state directory", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale local API socket %s: %w", path, err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
