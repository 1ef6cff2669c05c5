package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// Status is what `meshnode status` shows: this node, then one entry per
// member, then the NATS route mesh.
type Status struct {
	Name          string         `json:"name"`
	Mesh          string         `json:"mesh"`
	Addr          string         `json:"overlay_addr"`
	WireGuardKey  string         `json:"wireguard_key"`
	Roles         string         `json:"roles"`
	Interface     string         `json:"interface"`
	ListenPort    int            `json:"listen_port"`
	Endpoints     []string       `json:"endpoints"`
	CertExpires   time.Time      `json:"cert_expires"`
	TicketExpires time.Time      `json:"ticket_expires"`
	Members       []MemberStatus `json:"members"`
	NATS          NATSStatus     `json:"nats"`
	// Healthy is false when any member is not alive, a live member has no
	// recent handshake, or NATS routes are missing; Problems says which.
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
}

// MemberStatus is one line of `meshnode status`.
type MemberStatus struct {
	Name          string    `json:"name"`
	Addr          string    `json:"overlay_addr"`
	State         string    `json:"state"`
	Roles         string    `json:"roles"`
	Path          string    `json:"path"` // "direct <endpoint>" or "-"
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	RxBytes       int64     `json:"rx_bytes"`
	TxBytes       int64     `json:"tx_bytes"`
}

// NATSStatus summarises the embedded NATS server.
type NATSStatus struct {
	ServerName     string `json:"server_name"`
	ClientURL      string `json:"client_url"`
	RoutesUp       int    `json:"routes_up"`
	RoutesExpected int    `json:"routes_expected"`
	JetStream      string `json:"jetstream"`
}

// InviteRequest asks the daemon for a join token.
type InviteRequest struct {
	TTL   time.Duration `json:"ttl"`
	Roles string        `json:"roles"`
}

// InviteResponse carries the token.
type InviteResponse struct {
	Token string `json:"token"`
}

// apiBackend is what the local API needs from the node; an interface so the
// API is tested without a running mesh.
type apiBackend interface {
	Status() Status
	Invite(ttl time.Duration, roles identity.Roles) (string, error)
	Leave() error
}

type apiError struct {
	Error string `json:"error"`
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
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status())
	})
	mux.HandleFunc("POST /v1/invite", func(w http.ResponseWriter, r *http.Request) {
		var req InviteRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{"bad request: " + err.Error()})
			return
		}
		roles, err := identity.ParseRoles(req.Roles)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
			return
		}
		tok, err := b.Invite(req.TTL, roles)
		if err != nil {
			writeJSON(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, InviteResponse{Token: tok})
	})
	mux.HandleFunc("POST /v1/leave", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Leave(); err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
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

// ErrNotRunning means no daemon answers on the state directory's socket.
var ErrNotRunning = errors.New("meshnode is not running")

// LocalClient talks to a running daemon over its local API socket.
type LocalClient struct {
	Socket string
	hc     *http.Client
}

// NewLocalClient returns a client for the daemon of state directory d.
func NewLocalClient(d identity.StateDir) *LocalClient {
	sock := d.APISocketPath()
	return &LocalClient{Socket: sock, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		},
	}}}
}

func (c *LocalClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://meshnode"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("%w (no daemon answers on %s)", ErrNotRunning, c.Socket)
		}
		return fmt.Errorf("local API %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return errors.New(e.Error)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Status fetches the daemon's status.
func (c *LocalClient) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Invite asks the daemon for a one-time join token.
func (c *LocalClient) Invite(ctx context.Context, ttl time.Duration, roles identity.Roles) (string, error) {
	var r InviteResponse
	if err := c.do(ctx, http.MethodPost, "/v1/invite", InviteRequest{TTL: ttl, Roles: roles.String()}, &r); err != nil {
		return "", err
	}
	return r.Token, nil
}

// Leave asks the daemon to leave the mesh gracefully and stop.
func (c *LocalClient) Leave(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/leave", struct{}{}, nil)
}
