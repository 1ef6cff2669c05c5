package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/identity"
)

// ErrNotRunning means no daemon answers on the state directory's socket.
var ErrNotRunning = errors.New("meshnode is not running")

// Client talks to a running daemon over its local API socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon of state directory d.
func NewClient(d identity.StateDir) *Client {
	sock := d.APISocketPath()
	return &Client{Socket: sock, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		},
	}}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// send makes one request and returns a 200 answer; any other status is an
// error carrying the daemon's message.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://meshnode"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("%w (no daemon answers on %s)", ErrNotRunning, c.Socket)
		}
		return nil, fmt.Errorf("local API %s: %w", c.Socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e ErrorResponse
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return nil, errors.New(e.Error)
	}
	return resp, nil
}

// Status fetches the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.do(ctx, http.MethodGet, PathStatus, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Invite asks the daemon for a one-time join token.
func (c *Client) Invite(ctx context.Context, ttl time.Duration, roles identity.Roles) (string, error) {
	var r InviteResponse
	if err := c.do(ctx, http.MethodPost, PathInvite, InviteRequest{TTL: ttl, Roles: roles}, &r); err != nil {
		return "", err
	}
	return r.Token, nil
}

// Leave asks the daemon to leave the mesh gracefully and stop.
func (c *Client) Leave(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, PathLeave, struct{}{}, nil)
}

// maxMetrics bounds what Metrics reads: a 1,000-member mesh with per-peer
// series is about 300 KB.
const maxMetrics = 16 << 20

// Metrics fetches the daemon's metrics in the Prometheus text format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, PathMetrics, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, maxMetrics))
}

// Renew asks the daemon to renew its ticket and node certificate now.
func (c *Client) Renew(ctx context.Context) (*RenewResponse, error) {
	var r RenewResponse
	if err := c.do(ctx, http.MethodPost, PathRenew, struct{}{}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
