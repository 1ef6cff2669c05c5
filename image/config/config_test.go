package config

import (
	"strings"
	"testing"
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
	stripped := RemoveToken(b)
	out2, err := Parse("x", stripped)
	if err != nil {
		t.Fatal(err)
	}
	if out2.Token != "" || out2.Join != in.Join || out2.Name != in.Name {
		t.Fatalf("after RemoveToken: %+v\n%s", out2, stripped)
	}
}

func TestRemoveTokenKeepsOtherSections(t *testing.T) {
	in := "# token = \"comment stays\"\ntoken = \"x\"\njoin=\"p\"\n[other]\ntoken = \"y\"\n"
	got := string(RemoveToken([]byte(in)))
	want := "# token = \"comment stays\"\njoin=\"p\"\n[other]\ntoken = \"y\"\n"
	if got != want {
		t.Fatalf("got %q want %q", got, want)
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
	err := c.ApplyCmdline("console=ttyS0 meshnode.name=n1 meshnode.join=10.0.2.2 meshnode.token=t meshnode.dhcp=false meshnode.address=10.0.2.15/24 meshnode.dns=1.1.1.1,8.8.8.8 quiet")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "n1" || c.Join != "10.0.2.2" || c.Token != "t" || c.Network.UseDHCP() || len(c.Network.DNS) != 2 {
		t.Fatalf("%+v", c)
	}
	if err := c.ApplyCmdline("meshnode.nmae=x"); err == nil {
		t.Fatal("unknown key accepted")
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
