package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/identity"
)

func initState(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := runInit(context.Background(), []string{"--state", dir, "--name", "alpha", "--mesh", "acme", "--iface", "mtest0"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestInitRefusesSecondIdentity(t *testing.T) {
	dir := initState(t)
	before, err := os.ReadFile(identity.StateDir(dir).SeedPath())
	if err != nil {
		t.Fatal(err)
	}
	err = runInit(context.Background(), []string{"--state", dir, "--name", "beta"})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second init: got %v, want 'already exists'", err)
	}
	after, _ := os.ReadFile(identity.StateDir(dir).SeedPath())
	if string(before) != string(after) {
		t.Fatal("second init changed the seed")
	}
}

func TestJoinRefusesEnrolledState(t *testing.T) {
	dir := initState(t)
	err := runJoin(context.Background(), []string{"192.0.2.1", "--token", "mnj1-x", "--name", "beta", "--state", dir})
	if err == nil || !strings.Contains(err.Error(), "already enrolled") {
		t.Fatalf("join on an enrolled state directory: got %v, want 'already enrolled'", err)
	}
}

func TestJoinArgumentErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--token", "t", "--name", "b", "--state", dir}, "missing PEER"},
		{[]string{"192.0.2.1", "--name", "b", "--state", dir}, "--token is required"},
		{[]string{"192.0.2.1", "--token", "t", "--name", "Bad_Name", "--state", dir}, "--name"},
		{[]string{"192.0.2.1", "--token", "not-a-token", "--name", "b", "--state", dir}, "--token: join token is malformed"},
		{[]string{"192.0.2.1", "extra", "--token", "t", "--name", "b", "--state", dir}, `unexpected argument "extra"`},
	} {
		err := runJoin(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("join %v: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("refused joins wrote %d files into the state directory", len(entries))
	}
}

func TestInviteOfflineMintsRedeemableToken(t *testing.T) {
	dir := initState(t)
	tok, err := inviteOffline(identity.StateDir(dir), time.Hour, identity.RoleHub)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.LoadCA(identity.StateDir(dir).CAKeyPath(), identity.StateDir(dir).CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	roles, err := identity.OpenInvites(identity.StateDir(dir).InvitesPath(), ca.Trust).Redeem(tok, "beta", time.Now())
	if err != nil || roles != identity.RoleHub {
		t.Fatalf("redeem offline token: roles %v, %v", roles, err)
	}
}

func TestStatusNotRunningExits2(t *testing.T) {
	dir := initState(t)
	err := runStatus(context.Background(), []string{"--state", dir})
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("status with no daemon: got %v, want exit code 2", err)
	}
}
