package config

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestTemplateParsesEmpty(t *testing.T) {
	c, err := Parse("template", []byte(Template))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "" || c.Token != "" || !c.Network.UseDHCP() {
		t.Fatalf("template is not empty: %+v", c)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	f := false
	in := Config{Name: "edge-01", Join: "10.0.2.2:51821", Token: "tok_abc",
		Network: Network{DHCP: &f, Address: "192.0.2.10/24", Gateway: "192.0.2.1", DNS: []string{"192.0.2.1", "192.0.2.2"}}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Parse("x", b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if out.Name != in.Name || out.Join != in.Join || out.Token != in.Token || out.Network.UseDHCP() ||
		out.Network.Address != in.Network.Address || out.Network.Gateway != in.Network.Gateway ||
		strings.Join(out.Network.DNS, ",") != "192.0.2.1,192.0.2.2" {
		t.Fatalf("round trip: %+v", out)
	}
	stripped, tok, err := RemoveToken("x", b, time.Now())
	if err != nil || len(tok) != 1 || tok[0] != in.Token {
		t.Fatalf("RemoveToken: %q %v", tok, err)
	}
	out2, err := Parse("x", stripped)
	if err != nil {
		t.Fatal(err)
	}
	want := out
	want.Token = ""
	if !reflect.DeepEqual(out2, want) {
		t.Fatalf("after RemoveToken: %+v\n%s", out2, stripped)
	}
}

// removeTokenCases are config.toml files that a line-by-line edit got
// wrong (issue 14): each spelling must lose its token and keep the rest.
var removeTokenCases = []struct{ name, in string }{
	{"bare key", "name = \"edge-1\"\njoin = \"peer\"\ntoken = \"mnj1-secret\"\n"},
	{"double-quoted key", "name = \"edge-1\"\njoin = \"peer\"\n\"token\" = \"mnj1-secret\"\n"},
	{"single-quoted key", "name = \"edge-1\"\njoin = \"peer\"\n'token' = 'mnj1-secret'\n"},
	{"escaped key", "name = \"edge-1\"\njoin = \"peer\"\n\"\\u0074oken\" = \"mnj1-secret\"\n"},
	{"BOM", "\ufefftoken = \"mnj1-secret\"\nname = \"edge-1\"\njoin = \"peer\"\n"},
	{"BOM and quoted key", "\ufeff\"token\" = \"mnj1-secret\"\nname = \"edge-1\"\njoin = \"peer\"\n"},
	{"multi-line basic", "name = \"edge-1\"\njoin = \"peer\"\ntoken = \"\"\"\nmnj1-secret\"\"\"\n"},
	{"multi-line literal", "name = \"edge-1\"\njoin = \"peer\"\ntoken = '''\nmnj1-secret'''\n"},
	{"line continuation", "name = \"edge-1\"\njoin = \"peer\"\ntoken = \"\"\"mnj1-\\\n    secret\"\"\"\n"},
	{"CRLF and comments", "# first boot\r\nname = \"edge-1\" # here\r\njoin = \"peer\"\r\ntoken = \"mnj1-secret\" # one-time\r\n"},
	{"upper case", "name = \"edge-1\"\njoin = \"peer\"\nTOKEN = \"mnj1-secret\"\n"},
	{"kelvin sign", "name = \"edge-1\"\njoin = \"peer\"\n\"to\u212aen\" = \"mnj1-secret\"\n"},
	{"token text in a comment", "# old: token = \"mnj1-secret\"\nname = \"edge-1\"\njoin = \"peer\"\ntoken = \"mnj1-secret\"\n"},
	{"token first, then a table", "token = \"mnj1-secret\"\njoin = \"peer\"\nname = \"edge-1\"\n[network]\ndhcp = true\n"},
}

func TestRemoveTokenSpellings(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range removeTokenCases {
		t.Run(tc.name, func(t *testing.T) {
			before, err := Parse("cfg.toml", []byte(tc.in))
			if err != nil {
				t.Fatalf("test input does not parse: %v", err)
			}
			if before.Token != "mnj1-secret" {
				t.Fatalf("test input token %q", before.Token)
			}
			out, tok, err := RemoveToken("cfg.toml", []byte(tc.in), now)
			if err != nil {
				t.Fatal(err)
			}
			if len(tok) != 1 || tok[0] != "mnj1-secret" {
				t.Errorf("removed tokens %q", tok)
			}
			if bytes.Contains(out, []byte("secret")) || bytes.HasPrefix(out, []byte(bom)) {
				t.Errorf("token text or BOM left:\n%s", out)
			}
			if !strings.Contains(string(out), "removed from this file after the join (2026-03-01T12:00:00Z)") {
				t.Errorf("no header saying the token was removed:\n%s", out)
			}
			after, err := Parse("cfg.toml", out)
			if err != nil {
				t.Fatalf("rewritten file does not parse: %v\n%s", err, out)
			}
			before.Token = ""
			if !reflect.DeepEqual(after, before) {
				t.Errorf("settings changed: %+v, want %+v\n%s", after, before, out)
			}
			if err := CheckNoToken("cfg.toml", out, tok); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestRemoveTokenKeepsSettings: every setting, of every type, survives, and
// so does what this version does not know (another section's "token" is
// not the join token).
func TestRemoveTokenKeepsSettings(t *testing.T) {
	in := `# hand-edited
name = "edge-7"
join = "203.0.113.10:51821"
token = "mnj1-abc"
future = 42

[network]
interface = "enp1s0"
dhcp = false
address = "192.0.2.10/24"
gateway = "192.0.2.1"
dns = ["192.0.2.1", "192.0.2.2"]

[other]
token = "not-the-join-token"
`
	out, tok, err := RemoveToken("cfg.toml", []byte(in), time.Unix(0, 0))
	if err != nil || len(tok) != 1 || tok[0] != "mnj1-abc" {
		t.Fatalf("RemoveToken: %q %v", tok, err)
	}
	var got map[string]any
	if _, err := toml.Decode(string(out), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "edge-7", "join": "203.0.113.10:51821", "future": int64(42),
		"network": map[string]any{"interface": "enp1s0", "dhcp": false, "address": "192.0.2.10/24",
			"gateway": "192.0.2.1", "dns": []any{"192.0.2.1", "192.0.2.2"}},
		"other": map[string]any{"token": "not-the-join-token"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v\n%s", got, want, out)
	}
}

func TestRemoveTokenNoTokenOrInvalid(t *testing.T) {
	in := []byte("# nothing to do\nname = \"edge-1\"\n")
	out, tok, err := RemoveToken("cfg.toml", in, time.Now())
	if err != nil || tok != nil || !bytes.Equal(out, in) {
		t.Fatalf("no token: %q %q %v", out, tok, err)
	}
	// What the old line editor left behind: not TOML, so nothing is
	// rewritten and the error names the file.
	_, _, err = RemoveToken("/boot/meshnode/config.toml", []byte("name = \"x\"\nmnj1-secret\"\"\"\n"), time.Now())
	if err == nil || !strings.Contains(err.Error(), "/boot/meshnode/config.toml") {
		t.Fatalf("invalid TOML: %v", err)
	}
}

func TestCheckNoToken(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"name = \"x\"\n", ""},
		{"\ufeff'token' = \"t-1\"\n", "still has a token"},
		{"Token = \"\"\n", "still has a token"},
		{"# t-1\nname = \"x\"\n", "token's text"},
		{"name = \"t-1\n", "does not parse"},
	} {
		err := CheckNoToken("cfg.toml", []byte(tc.in), []string{"t-1"})
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "cfg.toml")) {
			t.Errorf("CheckNoToken(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestParseBOM(t *testing.T) {
	c, err := Parse("cfg.toml", []byte("\ufeffname = \"edge-1\"\n"))
	if err != nil || c.Name != "edge-1" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"name = ", "cfg.toml"},
		{"nmae = \"x\"", "unknown keys nmae"},
		{"token = \"t\"", "join is not"},
		{"[network]\naddress = \"10.0.0.1\"", "CIDR"},
		{"[network]\ndhcp = false", "needs network.address"},
		{"name = \"bad name\"", "name"},
	} {
		_, err := Parse("cfg.toml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestApplyCmdline(t *testing.T) {
	var c Config
	err := c.ApplyCmdline("console=ttyS0 meshnode.name=n1 meshnode.join=10.0.2.2 meshnode.dhcp=false meshnode.address=10.0.2.15/24 meshnode.dns=1.1.1.1,8.8.8.8 quiet")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "n1" || c.Join != "10.0.2.2" || c.Network.UseDHCP() || len(c.Network.DNS) != 2 {
		t.Fatalf("%+v", c)
	}
	if err := c.ApplyCmdline("meshnode.nmae=x"); err == nil {
		t.Fatal("unknown key accepted")
	}
}

// TestApplyCmdlineRefusesToken: a token on the kernel command line cannot
// be cleaned up after the join, so it is refused, and the error does not
// repeat it on the console.
func TestApplyCmdlineRefusesToken(t *testing.T) {
	for _, arg := range []string{"meshnode.token=mnj1-secret", "meshnode.token="} {
		c := Config{Join: "10.0.2.2"}
		err := c.ApplyCmdline("console=ttyS0 meshnode.join=10.0.2.2 " + arg)
		if !errors.Is(err, ErrCmdlineToken) {
			t.Fatalf("%s: %v", arg, err)
		}
		if strings.Contains(err.Error(), "secret") || c.Token != "" {
			t.Fatalf("%s: token echoed or used: %v, %+v", arg, err, c)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(Template))
	f.Add([]byte("name=\"a\"\njoin=\"b\"\ntoken=\"c\"\n[network]\ndns=[\"1.1.1.1\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		b, err := Encode(c)
		if err != nil {
			t.Fatalf("valid config does not encode: %v", err)
		}
		if _, err := Parse("re", b); err != nil {
			t.Fatalf("encoded config does not parse: %v\n%s", err, b)
		}
	})
}

// FuzzRemoveToken: whatever config PID 1 accepts, removing its token gives
// a config it still accepts, with the same settings and no token text.
func FuzzRemoveToken(f *testing.F) {
	f.Add([]byte(Template))
	for _, tc := range removeTokenCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		before, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		out, tok, err := RemoveToken("fuzz", data, time.Unix(0, 0))
		if err != nil {
			// Only a token whose text recurs in another setting may fail, loudly.
			if before.Token != "" && strings.Contains(err.Error(), "token's text") {
				return
			}
			t.Fatalf("RemoveToken of a valid config: %v\n%q", err, data)
		}
		if before.Token != "" && !slices.Contains(tok, before.Token) {
			t.Fatalf("removed %q, config had %q", tok, before.Token)
		}
		after, err := Parse("re", out)
		if err != nil {
			t.Fatalf("rewritten config does not parse: %v\n%s", err, out)
		}
		before.Token = ""
		if !reflect.DeepEqual(after, before) {
			t.Fatalf("settings changed: %+v, want %+v", after, before)
		}
	})
}
