// Package config owns the appliance's first-boot configuration: the
// meshnode/config.toml file on the ESP (written by `meshnode image configure`,
// read by PID 1) and the meshnode.* kernel arguments that override it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

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
	md, err := toml.Decode(string(stripBOM(data)), &c)
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

// ErrCmdlineToken is the error for a meshnode.token= kernel argument. The
// token is refused there rather than used and "removed": the command line
// sits in the boot loader entries on the ESP (two slots, renamed by boot
// counting, rewritten by updates) or in whatever loader or editor started
// the kernel, the kernel prints it on the console, and every process can
// read it in /proc/cmdline. PID 1 cannot find and clean all of that, so the
// only token it accepts is the one in config.toml, which it rewrites
// without the token after the join.
var ErrCmdlineToken = errors.New("kernel argument meshnode.token= is refused: the kernel command line " +
	"is stored in the boot loader entry, printed on the console and readable in /proc/cmdline, and " +
	"cannot be cleaned reliably after the join; remove it and put the token in config.toml " +
	"(meshnode image configure --token), which is rewritten without it after the join")

// ApplyCmdline overlays meshnode.KEY=VALUE kernel arguments (name, join,
// interface, dhcp, address, gateway, dns as a comma list) on c. Unknown
// meshnode.* keys are an error so a typo in a test is loud; a token is
// refused (ErrCmdlineToken) and never copied into c.
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
			// Not echoed: the error goes to the console.
			return ErrCmdlineToken
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

// bom is the UTF-8 byte order mark some Windows editors put at the start
// of a file. TOML parsers skip it, but it also hides the first key from any
// line-oriented look at the file, so it is stripped before anything else.
const bom = "\ufeff"

func stripBOM(data []byte) []byte { return bytes.TrimPrefix(data, []byte(bom)) }

// RemoveToken returns config.toml without its join token, and the token
// values it removed (none when data has no token key; data is then
// returned as it is).
//
// The file is parsed and re-encoded, not edited line by line: a quoted key
// ("token", 'token', "\u0074oken"), a multi-line value or a byte order mark
// defeats any text edit and either keeps the token or leaves TOML that no
// later boot can read. Parse matches keys to fields case-insensitively
// (the TOML decoder does), so every top-level key that folds to "token" is
// removed. Every other setting is kept with its type, including keys this
// version does not know (a newer image may have written them). Comments are
// not: the result starts with a header saying so and when the token was
// removed. The result is decoded again and must hold exactly the old
// settings minus the token, and not the token's text anywhere.
func RemoveToken(name string, data []byte, now time.Time) (out []byte, removed []string, err error) {
	var m map[string]any
	if _, err := toml.Decode(string(stripBOM(data)), &m); err != nil {
		return nil, nil, fmt.Errorf("%s: cannot remove the join token: %w", name, err)
	}
	found := false
	for k, v := range m {
		if isTokenKey(k) {
			found = true
			if s, ok := v.(string); ok && s != "" { // any other type is invalid, but goes just the same
				removed = append(removed, s)
			}
			delete(m, k)
		}
	}
	if !found {
		return data, nil, nil
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "# meshnode first-boot configuration.\n"+
		"# The join token was removed from this file after the join (%s);\n"+
		"# the file was rewritten from its settings, so earlier comments are gone.\n"+
		"# The node's identity lives on the \"meshnode-perm\" partition.\n\n",
		now.UTC().Format(time.RFC3339))
	enc := toml.NewEncoder(&b)
	enc.Indent = ""
	if err := enc.Encode(m); err != nil {
		return nil, nil, fmt.Errorf("%s: cannot remove the join token: encoding the other settings: %w", name, err)
	}
	out = b.Bytes()

	var back map[string]any
	if _, err := toml.Decode(string(out), &back); err != nil {
		return nil, nil, fmt.Errorf("%s: rewritten without the token, it does not parse: %w", name, err)
	}
	if !reflect.DeepEqual(back, m) {
		return nil, nil, fmt.Errorf("%s: rewritten without the token, its other settings changed", name)
	}
	if err := CheckNoToken(name, out, removed); err != nil {
		return nil, nil, err
	}
	return out, removed, nil
}

// isTokenKey reports whether a top-level key would decode into
// Config.Token: the decoder falls back to strings.EqualFold, so "TOKEN"
// and "toKen" (with U+212A KELVIN SIGN) count as well.
func isTokenKey(k string) bool { return strings.EqualFold(k, "token") }

// CheckNoToken proves that data, a config.toml after RemoveToken, holds no
// join token: it parses, has no key that would decode as the token, and
// contains the text of none of tokens (the values removed) anywhere,
// comments included.
func CheckNoToken(name string, data []byte, tokens []string) error {
	var m map[string]any
	if _, err := toml.Decode(string(stripBOM(data)), &m); err != nil {
		return fmt.Errorf("%s: does not parse after removing the join token: %w", name, err)
	}
	for k := range m {
		if isTokenKey(k) {
			return fmt.Errorf("%s: still has a token after removing it", name)
		}
	}
	for _, t := range tokens {
		if t != "" && bytes.Contains(data, []byte(t)) {
			return fmt.Errorf("%s: still contains the join token's text after removing it", name)
		}
	}
	return nil
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
