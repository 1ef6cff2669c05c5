package mesh

import (
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/defaults"
)

func TestLoadConfigDefaults(t *testing.T) {
	dir := identity.StateDir(t.TempDir())
	c, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Interface != defaults.Interface || c.ListenPort != defaults.ListenPort || c.MTU != defaults.MTU ||
		c.GossipPort != defaults.GossipPort || c.NATSClientPort != defaults.NATSClientPort ||
		c.NATSRoutePort != defaults.NATSRoutePort || c.BootstrapExpect != defaults.BootstrapExpect ||
		c.EnrollAddr != ":51821" || c.JetStreamMaxMemory == 0 || c.JetStreamMaxStore == 0 {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadConfigFileAndErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, wantErr string
		check               func(Config) bool
	}{
		{"settings", "interface = \"edge0\"\nlisten_port = 51900\nendpoints = [\"192.0.2.1:51900\"]\n", "",
			func(c Config) bool { return c.Interface == "edge0" && c.ListenPort == 51900 && len(c.Endpoints) == 1 }},
		{"unknown key named", "listen_prot = 1\n", `unknown setting "listen_prot"`, nil},
		{"unknown key names the file", "interface = \"edge0\"\nlisten_prot = 1\n", `meshnode.toml: unknown setting "listen_prot"`, nil},
		{"unknown table named", "[nats]\nport = 1\n", `unknown setting "nats"`, nil},
		{"garbage", "this is = = not toml", "meshnode.toml", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := identity.StateDir(t.TempDir())
			if err := os.WriteFile(dir.ConfigPath(), []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("got %+v, %v", c, err)
			}
		})
	}
}

func TestValidateNamesTheSetting(t *testing.T) {
	base := Config{}.withDefaults()
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.ListenPort = 70000 }, "listen_port"},
		{func(c *Config) { c.MTU = 1000 }, "mtu"},
		{func(c *Config) { c.BootstrapExpect = -1 }, "bootstrap_expect"},
		{func(c *Config) { c.Interface = "a-very-long-interface-name" }, "interface"},
		{func(c *Config) { c.Endpoints = []string{"not-an-ip:1"} }, "endpoint"},
		{func(c *Config) { c.EnrollAddr = "nocolon" }, "enroll_addr"},
	} {
		c := base
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error naming %q", err, tc.want)
		}
	}
}

func TestSaveConfigKeepsOnlyNonDefaults(t *testing.T) {
	dir := identity.StateDir(t.TempDir())
	c := Config{StateDir: dir, Interface: "edge7", Endpoints: []string{"198.51.100.4"}}.withDefaults()
	if err := SaveConfig(c); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dir.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "listen_port") || strings.Contains(string(b), "mtu") {
		t.Fatalf("defaults written out:\n%s", b)
	}
	back, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := back.ParseEndpoints()
	if err != nil || back.Interface != "edge7" || len(eps) != 1 || eps[0] != netip.MustParseAddrPort("198.51.100.4:51820") {
		t.Fatalf("round trip: %+v %v %v", back, eps, err)
	}
}

// TestSaveConfigRoundTripsEveryField gives every field of Config a value
// that is not its default, saves and loads it: a field that meshnode.toml
// cannot carry (a forgotten tag, a "-" tag, a type TOML cannot encode) fails
// here instead of being silently lost when init or join rewrite the file.
func TestSaveConfigRoundTripsEveryField(t *testing.T) {
	dir := identity.StateDir(t.TempDir())
	want := Config{StateDir: dir}
	w, d := reflect.ValueOf(&want).Elem(), reflect.ValueOf(Config{}.withDefaults())
	for i := range w.NumField() {
		f, name := w.Field(i), w.Type().Field(i).Name
		if name == "StateDir" {
			continue // where the file is, not a setting in it
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString("x" + strings.ToLower(name))
		case reflect.Int, reflect.Int64:
			f.SetInt(d.Field(i).Int() + 1 + int64(i))
		case reflect.Bool:
			f.SetBool(!d.Field(i).Bool())
		case reflect.Slice:
			if f.Type().Elem().Kind() != reflect.String {
				t.Fatalf("field %s: %s: teach this test a non-default value", name, f.Type())
			}
			f.Set(reflect.ValueOf([]string{"192.0.2.1:1", "[2001:db8::1]:2"}).Convert(f.Type()))
		default:
			t.Fatalf("field %s: %s: teach this test a non-default value", name, f.Type())
		}
		if reflect.DeepEqual(f.Interface(), d.Field(i).Interface()) {
			t.Fatalf("field %s: test value %v is the default", name, f.Interface())
		}
	}
	if err := SaveConfig(want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	g := reflect.ValueOf(got)
	for i := range w.NumField() {
		if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
			b, _ := os.ReadFile(dir.ConfigPath())
			t.Errorf("field %s: saved %v, loaded %v; file:\n%s", w.Type().Field(i).Name, w.Field(i).Interface(), g.Field(i).Interface(), b)
		}
	}
}

func TestPickEndpointPrefersOurFamily(t *testing.T) {
	v4 := netip.MustParseAddrPort("192.0.2.7:51820")
	v6 := netip.MustParseAddrPort("[2001:db8::7]:51820")
	ours4 := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:51820")}
	ours6 := []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::1]:51820")}
	if got, ok := pickEndpoint([]netip.AddrPort{v6, v4}, ours4); !ok || got != v4 {
		t.Errorf("IPv4 box: got %v, want %v", got, v4)
	}
	if got, ok := pickEndpoint([]netip.AddrPort{v4, v6}, ours6); !ok || got != v6 {
		t.Errorf("IPv6 box: got %v, want %v", got, v6)
	}
	if _, ok := pickEndpoint(nil, ours4); ok {
		t.Error("a member with no endpoints got one")
	}
}

// An endpoint members must not dial is refused by name, unless the node
// is configured for a lab mesh.
func TestValidateInternalEndpoints(t *testing.T) {
	for _, ep := range []string{"127.0.0.1:51820", "[::1]:51820", "169.254.1.2:51820", "224.0.0.1"} {
		c := Config{Endpoints: []string{ep}}.withDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--lab-endpoints") {
			t.Errorf("endpoint %s: %v, want an error naming --lab-endpoints", ep, err)
		}
		c.LabEndpoints = true
		if err := c.Validate(); err != nil {
			t.Errorf("lab: endpoint %s: %v", ep, err)
		}
	}
	if err := (Config{Endpoints: []string{"10.0.0.1:51820", "[fd00::1]:1"}}.withDefaults()).Validate(); err != nil {
		t.Errorf("private endpoints: %v", err)
	}
}
