package mesh

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
)

type fakeBackend struct {
	left    bool
	minted  []identity.Roles
	revoked []string
}

func (f *fakeBackend) Status() api.Status {
	return api.Status{Name: "alpha", Members: []api.MemberStatus{{Name: "beta", State: api.StateAlive}}, Healthy: true}
}

func (f *fakeBackend) Invite(ttl time.Duration, roles identity.Roles) (string, error) {
	if ttl <= 0 {
		return "", errors.New("ttl must be positive")
	}
	f.minted = append(f.minted, roles)
	return "mnj1-token", nil
}

func (f *fakeBackend) Leave() error { f.left = true; return nil }

func (f *fakeBackend) WriteMetrics(w io.Writer) {
	io.WriteString(w, "# TYPE meshnode_members gauge\nmeshnode_members{state=\"alive\"} 1\n")
}

func (f *fakeBackend) Renew(context.Context) (*RenewResult, error) {
	return &RenewResult{From: "self", TicketExpires: time.Unix(1e9, 0).UTC()}, nil
}

func (f *fakeBackend) Revoke(target, reason string) (api.Revoked, error) {
	if target == "alpha" {
		return api.Revoked{}, errors.New("alpha is this node: an admin does not revoke itself")
	}
	f.revoked = append(f.revoked, target)
	return api.Revoked{Name: target, Issuer: "alpha", Reason: reason}, nil
}

func TestLocalAPI(t *testing.T) {
	dir := identity.StateDir(shortTempDir(t))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := api.NewClient(dir)
	ctx := context.Background()

	if _, err := c.Status(ctx); !errors.Is(err, api.ErrNotRunning) {
		t.Fatalf("status with no daemon: got %v, want ErrNotRunning", err)
	}

	fb := &fakeBackend{}
	stop, err := serveAPI(ctx, dir.APISocketPath(), fb, log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	fi, err := os.Stat(dir.APISocketPath())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v, want 0600", fi.Mode(), err)
	}
	// A second daemon on the same state directory must not steal the socket.
	if _, err := serveAPI(ctx, dir.APISocketPath(), fb, log); err == nil || !strings.Contains(err.Error(), "another meshnode") {
		t.Fatalf("second serveAPI: got %v, want 'another meshnode is running'", err)
	}

	st, err := c.Status(ctx)
	if err != nil || st.Name != "alpha" || len(st.Members) != 1 || st.Members[0].Name != "beta" || st.Members[0].State != api.StateAlive {
		t.Fatalf("status: %+v %v", st, err)
	}
	tok, err := c.Invite(ctx, time.Hour, identity.RoleHub)
	if err != nil || tok != "mnj1-token" || len(fb.minted) != 1 || fb.minted[0] != identity.RoleHub {
		t.Fatalf("invite: %q %v minted=%v", tok, err, fb.minted)
	}
	if _, err := c.Invite(ctx, 0, 0); err == nil || !strings.Contains(err.Error(), "ttl") {
		t.Fatalf("invite with ttl 0: got %v, want the backend's error", err)
	}
	text, err := c.Metrics(ctx)
	if err != nil || !strings.Contains(string(text), `meshnode_members{state="alive"} 1`) {
		t.Fatalf("metrics: %q %v", text, err)
	}
	rev, err := c.Revoke(ctx, "beta", "stolen")
	if err != nil || rev.Name != "beta" || rev.Issuer != "alpha" || rev.Reason != "stolen" || len(fb.revoked) != 1 {
		t.Fatalf("revoke: %+v %v revoked=%v", rev, err, fb.revoked)
	}
	if _, err := c.Revoke(ctx, "alpha", ""); err == nil || !strings.Contains(err.Error(), "this node") {
		t.Fatalf("revoke self: got %v, want the backend's error", err)
	}
	if err := c.Leave(ctx); err != nil || !fb.left {
		t.Fatalf("leave: %v left=%v", err, fb.left)
	}
	stop()
	if _, err := os.Stat(dir.APISocketPath()); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after stop: %v", err)
	}
}

func TestStaleSocketRemoved(t *testing.T) {
	dir := identity.StateDir(shortTempDir(t))
	// A plain file where the socket should be stands for a crashed daemon's
	// leftover: nothing answers on it.
	if err := os.WriteFile(dir.APISocketPath(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stop, err := serveAPI(context.Background(), dir.APISocketPath(), &fakeBackend{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("stale socket not cleaned: %v", err)
	}
	stop()
}

// shortTempDir keeps unix socket paths under the 108-byte limit.
func shortTempDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "mn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Clean(d)
}
