package main

import (
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/natsnode/natsclient"
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

// TestCommandsSorted keeps the commands table in the order usage prints it,
// with one row per name and nothing left empty.
func TestCommandsSorted(t *testing.T) {
	for i, c := range commands {
		if c.name == "" || c.usage == "" || c.run == nil {
			t.Errorf("commands[%d] %q: name, usage and run are all required", i, c.name)
		}
		if i > 0 && commands[i-1].name >= c.name {
			t.Errorf("commands[%d] %q comes after %q: keep the table sorted by name, one row per command", i, c.name, commands[i-1].name)
		}
		if lookup(c.name) != &commands[i] {
			t.Errorf("lookup(%q) does not find its row", c.name)
		}
	}
	if lookup("no-such-command") != nil {
		t.Error("lookup found a command that does not exist")
	}
}

// parseNodeFlags is how init, join and up turn their arguments into a
// Config.
func parseNodeFlags(t *testing.T, args ...string) (*nodeFlags, mesh.Config) {
	t.Helper()
	fs := newFlagSet("test", "")
	nf := addNodeFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := nf.config()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return nf, cfg
}

// TestEveryNodeFlagSetsConfig gives each node flag a value and proves the
// resulting Config changes: a node flag that is parsed and then not applied
// (a missing mapping) fails here. A new node flag needs a value below.
func TestEveryNodeFlagSetsConfig(t *testing.T) {
	dir := t.TempDir()
	values := map[string]string{
		"state":            t.TempDir(),
		"iface":            "edge9",
		"listen-port":      "51900",
		"endpoint":         "192.0.2.9:51900",
		"enroll-addr":      "127.0.0.1:9999",
		"bootstrap-expect": "1",
		"fast-timers":      "true",
		"lab-endpoints":    "true",
		"log-level":        "debug",
		"metrics-addr":     "127.0.0.1:9101",
		"metrics-per-peer": "true",
		"relay-only":       "true",
		"no-relay":         "true",
	}
	nf, base := parseNodeFlags(t, "--state", dir)
	n := 0
	nf.fs.VisitAll(func(f *flag.Flag) {
		n++
		v, ok := values[f.Name]
		if !ok {
			t.Errorf("node flag --%s: no test value; add one here", f.Name)
			return
		}
		if f.Name != "state" && nf.apply[f.Name] == nil {
			t.Errorf("node flag --%s: defined without nodeFlag, so config never applies it", f.Name)
		}
		_, got := parseNodeFlags(t, "--state", dir, "--"+f.Name+"="+v)
		if reflect.DeepEqual(got, base) {
			t.Errorf("--%s=%s: Config unchanged (%+v)", f.Name, v, got)
		}
	})
	if n != len(values) {
		t.Errorf("%d node flags, %d test values: remove the values of flags that are gone", n, len(values))
	}
}

// TestNodeFlagsWinOverConfigFile: meshnode.toml sets what no flag gives.
func TestNodeFlagsWinOverConfigFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(identity.StateDir(dir).ConfigPath(), []byte("interface = \"file0\"\nlisten_port = 51999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, cfg := parseNodeFlags(t, "--state", dir, "--iface", "flag0")
	if cfg.Interface != "flag0" || cfg.ListenPort != 51999 {
		t.Fatalf("interface %q listen port %d: want the flag's flag0 and the file's 51999", cfg.Interface, cfg.ListenPort)
	}
}

// TestRootStateFlag: `meshnode --state DIR <command>` reaches the command,
// and a --state given to the command itself wins over the root one.
func TestRootStateFlag(t *testing.T) {
	t.Cleanup(func() { stateDefault = defaults.StateDir })
	dir := t.TempDir()
	if _, err := dispatch(context.Background(), []string{"--state", dir, "init", "--name", "alpha", "--iface", "mtest0"}); err != nil {
		t.Fatal(err)
	}
	if !identity.StateDir(dir).HasIdentity() {
		t.Fatalf("meshnode --state %s init: no identity in %s", dir, dir)
	}
	if _, err := dispatch(context.Background(), []string{"--state", dir, "nats-env"}); err != nil {
		t.Fatalf("meshnode --state DIR nats-env: %v", err)
	}
	empty := t.TempDir()
	if _, err := dispatch(context.Background(), []string{"--state", empty, "nats-env", "--state", dir}); err != nil {
		t.Fatalf("meshnode --state EMPTY nats-env --state DIR: %v (the command's --state must win)", err)
	}
	if _, err := dispatch(context.Background(), []string{"--state", dir, "nats-env", "--state", empty}); err == nil {
		t.Fatal("meshnode --state DIR nats-env --state EMPTY: read DIR, want EMPTY (the command's --state must win)")
	}
}

// TestDispatchUsageErrors: usage problems exit 2 (flag.ErrHelp) without
// running anything.
func TestDispatchUsageErrors(t *testing.T) {
	t.Cleanup(func() { stateDefault = defaults.StateDir })
	for _, args := range [][]string{nil, {"help"}, {"-h"}, {"--help"}, {"no-such-command"}, {"--no-such-flag", "status"}} {
		if _, err := dispatch(context.Background(), args); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("meshnode %v: got %v, want usage (exit 2)", args, err)
		}
	}
}

// revoke takes its target before or after its flags, and with no daemon
// it signs on the state directory; status of a stopped revoked node says
// who revoked it (TestRevoke covers the daemon path end to end).
func TestRevokeOfflineAndArguments(t *testing.T) {
	ctx := context.Background()
	dir := initState(t)
	if err := runRevoke(ctx, []string{"--state", dir}); err == nil || !strings.Contains(err.Error(), "missing NAME") {
		t.Fatalf("revoke without a target: %v", err)
	}
	if err := runRevoke(ctx, []string{"--state", dir, "nobody", "--reason", "x"}); err == nil || !strings.Contains(err.Error(), `no member named "nobody"`) {
		t.Fatalf("revoke nobody: %v", err)
	}
	if err := runRevoke(ctx, []string{"--state", dir, "a", "b"}); err == nil {
		t.Fatal("revoke with two targets succeeded")
	}
	seed, err := identity.NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	key := identity.FromSeed(seed).Public()
	if err := runRevoke(ctx, []string{"--state", dir, key.String(), "--reason", "lost"}); err != nil {
		t.Fatal(err)
	}
	m, err := identity.StateDir(dir).LoadMember(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	revs, err := identity.LoadRevocations(identity.StateDir(dir).RevocationsPath(), m.Trust)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := revs.Get(key); !ok || r.Issuer != m.Ticket.Name || r.Reason != "lost" {
		t.Fatalf("revocations file after an offline revoke: %+v %v", r, ok)
	}
	// The admin's own revocation, as if it had come by gossip: status of
	// the stopped node says so.
	self, err := m.CA.RevokeMember(identity.RevokeRequest{Node: m.ID.Public(), Name: m.Ticket.Name, Issuer: "other", Reason: "retired"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	revs.Add(self)
	if err := revs.Save(identity.StateDir(dir).RevocationsPath()); err != nil {
		t.Fatal(err)
	}
	err = runStatus(ctx, []string{"--state", dir})
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "this node has been revoked by other at ") || !strings.Contains(err.Error(), ": retired") {
		t.Fatalf("status of a revoked stopped node: %v", err)
	}
}

// nats-env and `meshnode nats` share one recipe: NATS_URL with this node
// first and the live members after it, and natsclient's settings.
func TestNATSRecipe(t *testing.T) {
	dir := identity.StateDir(initState(t))
	r, err := loadRecipe(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dir.LoadMember(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	local := natsURL(m.Ticket.Addr.String(), defaults.NATSClientPort)
	if r.URLs != local {
		t.Fatalf("without a daemon NATS_URL = %q, want this node alone (%s)", r.URLs, local)
	}
	opts, err := r.options("test")
	if err != nil {
		t.Fatal(err)
	}
	o := nats.GetDefaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			t.Fatal(err)
		}
	}
	if o.PingInterval != natsclient.PingInterval || o.MaxPingsOut != natsclient.MaxPingsOutstanding || !o.NoRandomize || !o.Secure || o.Nkey == "" {
		t.Fatalf("options: ping %v ×%d, no randomize %v, TLS %v, nkey %q", o.PingInterval, o.MaxPingsOut, o.NoRandomize, o.Secure, o.Nkey)
	}

	members := []api.MemberStatus{
		{Name: "beta", Addr: netip.MustParseAddr("fd00::2"), State: api.StateAlive, NATSClientPort: 4222},
		{Name: "gamma", Addr: netip.MustParseAddr("fd00::3"), State: api.StateDead, NATSClientPort: 4222},
		{Name: "delta", Addr: netip.MustParseAddr("fd00::4"), State: api.StateAlive},
		{Name: "eps", Addr: netip.MustParseAddr("fd00::5"), State: api.StateAlive, NATSClientPort: 4333},
	}
	got := natsclient.URLs(local, memberURLs(members)...)
	if want := local + ",tls://[fd00::2]:4222,tls://[fd00::5]:4333"; got != want {
		t.Fatalf("NATS_URL = %q, want %q", got, want)
	}
	// On a leaf: this node, then the core members only.
	members[0].Roles = identity.RoleCore
	members[3].Roles = identity.RoleHub
	leafSt := &api.Status{NATS: api.NATSStatus{Role: api.NATSRoleLeaf}, Members: members}
	if got, want := natsclient.URLs(local, memberURLs(natsEnvMembers(leafSt))...), local+",tls://[fd00::2]:4222"; got != want {
		t.Fatalf("NATS_URL on a leaf = %q, want %q", got, want)
	}
	if got := natsEnvMembers(&api.Status{NATS: api.NATSStatus{Role: api.NATSRoleCore}, Members: members}); len(got) != len(members) {
		t.Fatalf("on a core member nats-env lists %d members, want all %d", len(got), len(members))
	}
	r.URLs = got
	var b strings.Builder
	r.print(&b)
	if !strings.HasPrefix(b.String(), "export NATS_URL="+got+"\n") || !strings.Contains(b.String(), "ping every 5s") {
		t.Fatalf("nats-env prints:\n%s", b.String())
	}
}
