// Package config owns the appliance's first-boot configuration: the
// meshnode/config.toml file on the ESP (written by `meshnode image configure`,
// read by PID 1) and the meshnode.* kernel arguments that override it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Path is where the config lives, relative to the ESP root.
const Path = "meshnode/config.toml"

// Config is the first-boot configuration of an appliance.
type Config struct {
	// Name is the node's name in the mesh.
	Name string `toml:"name"`
	// Join is the enrollment endpoint of an existing member (host or host:port).
	Join string `toml:"join"`
	// Token is the one-time join token; PID 1 removes it after a successful join.
	Token string `toml:"token"`
	// Network is how the box reaches the underlay.
	Network Network `toml:"network"`
}

// Network configures the underlay interface.
type Network struct {
	// Interface to configure; empty means the first Ethernet interface with a link.
	Interface string `toml:"interface"`
	// DHCP turns DHCP on (the default). When DHCP finds no server, Address is
	// used if set.
	DHCP *bool `toml:"dhcp"`
	// Address is a static address in CIDR form, e.g. 192.0.2.10/24.
	Address string `toml:"address"`
	// Gateway is the default route for a static address.
	Gateway string `toml:"gateway"`
	// DNS servers for a static address.
	DNS []string `toml:"dns"`
}

// UseDHCP reports whether DHCP is to be tried.
func (n Network) UseDHCP() bool { return n.DHCP == nil || *n.DHCP }

// Parse decodes config.toml. name is used in errors (file or device path).
func Parse(name string, data []byte) (Config, error) {
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("%s: unknown keys %s", name, strings.Join(keys, ", "))
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// Validate checks the syntax of every set field (not whether a join is possible).
func (c Config) Validate() error {
	if c.Name != "" && !validName(c.Name) {
		return fmt.Errorf("name %q: use letters, digits and '-' (at most 63)", c.Name)
	}
	if c.Token != "" && c.Join == "" {
		return errors.New("token is set but join is not: set the peer to join")
	}
	if strings.ContainsAny(c.Token, " \t\r\n\"") {
		return errors.New("token contains whitespace or quotes")
	}
	n := c.Network
	if n.Address != "" {
		if _, err := netip.ParsePrefix(n.Address); err != nil {
			return fmt.Errorf("network.address %q: want CIDR such as 192.0.2.10/24", n.Address)
		}
	}
	if n.Gateway != "" {
		if _, err := netip.ParseAddr(n.Gateway); err != nil {
			return fmt.Errorf("network.gateway %q: not an IP address", n.Gateway)
		}
		if n.Address == "" {
			return errors.New("network.gateway needs network.address")
		}
	}
	for _, d := range n.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return fmt.Errorf("network.dns %q: not an IP address", d)
		}
	}
	if !n.UseDHCP() && n.Address == "" {
		return errors.New("network.dhcp = false needs network.address")
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// ApplyCmdline overlays meshnode.KEY=VALUE kernel arguments (name, join,
// token, interface, dhcp, address, gateway, dns as a comma list) on c.
// Unknown meshnode.* keys are an error so a typo in a test is loud.
func (c *Config) ApplyCmdline(cmdline string) error {
	for _, f := range strings.Fields(cmdline) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || !strings.HasPrefix(k, "meshnode.") {
			continue
		}
		switch strings.TrimPrefix(k, "meshnode.") {
		case "name":
			c.Name = v
		case "join":
			c.Join = v
		case "token":
			c.Token = v
		case "interface":
			c.Network.Interface = v
		case "dhcp":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("kernel argument %s: %w", f, err)
			}
			c.Network.DHCP = &b
		case "address":
			c.Network.Address = v
		case "gateway":
			c.Network.Gateway = v
		case "dns":
			c.Network.DNS = strings.Split(v, ",")
		case "slot", "debug", "stub":
			// read by PID 1 itself
		default:
			return fmt.Errorf("kernel argument %s: unknown meshnode key", f)
		}
	}
	return c.Validate()
}

// Template is the commented config.toml shipped in a fresh image.
const Template = `# meshnode first-boot configuration.
#
# Fill it in with:  meshnode image configure --image disk.img --name NAME --join PEER --token TOKEN
# or edit this file on the ESP (partition "meshnode-boot") before the first boot.
# After a successful join the token is removed from this file; the node's
# identity lives on the "meshnode-perm" partition from then on.

# Name of this node in the mesh (letters, digits, '-').
# name = "edge-01"

# Enrollment endpoint of any existing member (host or host:port) and a
# one-time token minted there with "meshnode invite".
# join = "203.0.113.10"
# token = ""

[network]
# Interface to use; default: the first Ethernet interface with a link.
# interface = "eth0"

# DHCP is tried first. If no server answers and an address is set below, the
# static address is used instead. Set dhcp = false to use only the static one.
# dhcp = true
# address = "192.0.2.10/24"
# gateway = "192.0.2.1"
# dns = ["192.0.2.1"]
`

// Encode renders c as a commented config.toml.
func Encode(c Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("# meshnode first-boot configuration (written by meshnode image configure).\n")
	b.WriteString("# The token is removed after a successful join.\n\n")
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s = %s\n", k, quote(v))
		}
	}
	kv("name", c.Name)
	kv("join", c.Join)
	kv("token", c.Token)
	b.WriteString("\n[network]\n")
	n := c.Network
	kv("interface", n.Interface)
	if n.DHCP != nil {
		fmt.Fprintf(&b, "dhcp = %t\n", *n.DHCP)
	}
	kv("address", n.Address)
	kv("gateway", n.Gateway)
	if len(n.DNS) > 0 {
		q := make([]string, len(n.DNS))
		for i, d := range n.DNS {
			q[i] = quote(d)
		}
		fmt.Fprintf(&b, "dns = [%s]\n", strings.Join(q, ", "))
	}
	return b.Bytes(), nil
}

// RemoveToken returns config.toml with the token line dropped, keeping
// everything else (comments included) as the operator wrote it.
func RemoveToken(data []byte) []byte {
	var out []string
	section := ""
	for _, line := range strings.SplitAfter(string(data), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			section = t
		}
		if section == "" && (strings.HasPrefix(t, "token=") || strings.HasPrefix(t, "token ") || strings.HasPrefix(t, "token\t")) {
			continue
		}
		out = append(out, line)
	}
	return []byte(strings.Join(out, ""))
}

// quote renders s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
