package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"rsc.io/qr"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
)

const phoneUsage = "add NAME --hub HUB [--hub HUB2] [--allow-pub SUBJ]… [--allow-sub SUBJ]… [--png FILE] [--conf FILE] [--ttl 365d] | list | remove NAME"

func runPhone(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: meshnode phone "+phoneUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "add":
		return phoneAdd(ctx, args[1:])
	case "list":
		return phoneList(ctx, args[1:])
	case "remove":
		return phoneRemove(ctx, args[1:])
	}
	fmt.Fprintf(os.Stderr, "meshnode phone: unknown subcommand %q\nusage: meshnode phone %s\n", args[0], phoneUsage)
	return flag.ErrHelp
}

// parseWithName parses fs from args where the one positional NAME may
// come before or after the flags (`phone add pixel --hub a` reads best).
func parseWithName(fs *flag.FlagSet, args []string) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return "", err
		}
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if name == "" {
		fs.Usage()
		return "", flag.ErrHelp
	}
	return name, nil
}

// parseTTL is a Go duration that also takes whole days ("365d").
func parseTTL(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("--ttl %s: want a positive number of days or a duration", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("--ttl %s: want a positive duration such as 365d or 720h", s)
	}
	return v, nil
}

func phoneAdd(ctx context.Context, args []string) error {
	fs := newFlagSet("phone add", "NAME --hub HUB [--hub HUB2] [--allow-pub SUBJ]… [--allow-sub SUBJ]… [--png FILE] [--conf FILE] [--ttl 365d]")
	state := stateFlag(fs)
	var hubs, pub, sub listFlag
	fs.Var(&hubs, "hub", "member the phone peers with (repeatable: each more is a separate tunnel NAME@HUB)")
	fs.Var(&pub, "allow-pub", "NATS subject the phone may publish to (repeatable; default phones.NAME.>)")
	fs.Var(&sub, "allow-sub", "NATS subject the phone may subscribe to (repeatable; default phones.NAME.> and its inbox)")
	png := fs.String("png", "", "also write the first tunnel's QR code as a PNG image")
	conf := fs.String("conf", "", "also write the first tunnel's wg-quick config (0600); more hubs go next to it as NAME@HUB.conf")
	ttl := fs.String("ttl", "365d", "how long the phone stays admitted")
	asJSON := fs.Bool("json", false, "print the whole answer as JSON (it holds the private keys) instead of configs and QR codes")
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	if len(hubs) == 0 {
		return errors.New("--hub: at least one hub is needed (a member with a reachable endpoint)")
	}
	validity, err := parseTTL(*ttl)
	if err != nil {
		return err
	}
	started := time.Now()
	resp, err := api.NewClient(identity.StateDir(*state)).PhoneAdd(ctx, api.PhoneAddRequest{Name: name, Hubs: hubs, Pub: pub, Sub: sub, TTL: validity})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(resp)
	}
	out := os.Stdout
	for i, tun := range resp.Tunnels {
		cfg := WGQuickConfig(resp, i)
		code, err := qr.Encode(cfg, qr.M)
		if err != nil {
			return fmt.Errorf("QR code of tunnel %s: %w", tunnelName(resp, i), err)
		}
		fmt.Fprintf(out, "# Tunnel %s (hub %s at %s): scan with the WireGuard app (+ → Scan from QR code)\n", tunnelName(resp, i), tun.Name, tun.Endpoint)
		fmt.Fprintf(out, "# %d bytes, QR version %d-M\n", len(cfg), qrVersion(code))
		WriteTerminalQR(out, code)
		fmt.Fprintln(out)
		fmt.Fprint(out, cfg)
		fmt.Fprintln(out)
		if *conf != "" {
			path := *conf
			if i > 0 {
				path = filepath.Join(filepath.Dir(*conf), tunnelName(resp, i)+".conf")
			}
			if err := identity.WriteFileAtomic(path, []byte(cfg), 0o600); err != nil {
				return fmt.Errorf("--conf: %w", err)
			}
			fmt.Fprintf(out, "# wrote %s\n", path)
		}
		if *png != "" && i == 0 {
			code.Scale = 8
			if err := identity.WriteFileAtomic(*png, code.PNG(), 0o600); err != nil {
				return fmt.Errorf("--png: %w", err)
			}
			fmt.Fprintf(out, "# wrote %s\n", *png)
		}
	}
	creds := NATSCredential(resp)
	code, err := qr.Encode(creds, qr.M)
	if err != nil {
		return fmt.Errorf("QR code of the NATS credential: %w", err)
	}
	fmt.Fprintf(out, "# NATS credential for a NATS app on the phone (TLS pinned to the mesh CA below)\n")
	WriteTerminalQR(out, code)
	fmt.Fprintln(out)
	fmt.Fprint(out, creds)
	fmt.Fprintf(out, "NATS_PUB=%s\nNATS_SUB=%s\n", strings.Join(resp.Pub, ","), strings.Join(resp.Sub, ","))
	fmt.Fprint(out, resp.CAPEM)
	fmt.Fprintf(out, "# The private keys above are shown once and stored nowhere. Phone %s (%s) is admitted until %s.\n",
		resp.Name, resp.Addr, resp.Expires.UTC().Format(time.RFC3339))
	fmt.Fprintf(os.Stderr, "phone %s added in %s\n", resp.Name, time.Since(started).Round(time.Millisecond))
	return nil
}

// tunnelName is the name of tunnel i in the phone app: NAME for the first
// hub, NAME@HUB for the others.
func tunnelName(r *api.PhoneAddResponse, i int) string {
	if i == 0 {
		return r.Name
	}
	return r.Name + "@" + r.Tunnels[i].Name
}

// WGQuickConfig is the config of tunnel i, with only the keys both stock
// phone apps parse (wireguard-apple's and wireguard-android's wg-quick
// parsers refuse any other key, and the import fails whole). AllowedIPs is
// the mesh /48 only (split tunnel); MTU 1280, the IPv6 minimum, is safe on
// every mobile path; keepalive 25 s keeps carrier NAT mappings open so that
// the mesh can reach the phone. No DNS line: the mesh serves no DNS, and on
// iOS a DNS line sends every DNS query into the tunnel.
func WGQuickConfig(r *api.PhoneAddResponse, i int) string {
	t := r.Tunnels[i]
	var b strings.Builder
	fmt.Fprintf(&b, "[Interface]\nPrivateKey = %s\nAddress = %s/128\nMTU = 1280\n\n", r.WireGuardPrivate, r.Addr)
	fmt.Fprintf(&b, "[Peer]\nPublicKey = %s\nAllowedIPs = %s\nEndpoint = %s\nPersistentKeepalive = 25\n", t.PublicKey, r.Prefix, t.Endpoint)
	return b.String()
}

// NATSCredential is what a NATS client on the phone needs besides the CA:
// the URL on the first hub's overlay address, the nkey seed, and the inbox
// prefix its grant allows.
func NATSCredential(r *api.PhoneAddResponse) string {
	return fmt.Sprintf("NATS_URL=%s\nNATS_NKEY=%s\nNATS_INBOX_PREFIX=%s\n", r.Tunnels[0].NATSURL, r.NKeySeed, r.InboxPrefix)
}

// qrVersion is the QR version of code (size = 17 + 4·version).
func qrVersion(c *qr.Code) int { return (c.Size - 17) / 4 }

// qrQuiet is the quiet zone, in modules, that the QR standard asks for.
const qrQuiet = 4

// WriteTerminalQR draws code with half blocks, two modules per character
// cell vertically, with the quiet zone. Colours are explicit (black on
// bright white) rather than the terminal's own: a camera needs dark modules
// on a light ground, and most terminals are light text on dark.
func WriteTerminalQR(w io.Writer, c *qr.Code) {
	const on, off = "\x1b[30;107m", "\x1b[0m"
	n := c.Size + 2*qrQuiet
	black := func(x, y int) bool { return c.Black(x-qrQuiet, y-qrQuiet) }
	var b strings.Builder
	for y := 0; y < n; y += 2 {
		b.WriteString(on)
		for x := range n {
			top, bottom := black(x, y), y+1 < n && black(x, y+1)
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteString(off + "\n")
	}
	io.WriteString(w, b.String())
}

func phoneList(ctx context.Context, args []string) error {
	fs := newFlagSet("phone list", "[--json]")
	state := stateFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	phones, err := api.NewClient(identity.StateDir(*state)).Phones(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(phones)
	}
	writePhones(os.Stdout, phones, time.Now())
	return nil
}

// writePhones prints one line per phone; the handshake and counters are
// the hub's, so they show on the phone's hub ("-" elsewhere).
func writePhones(w io.Writer, phones []api.PhoneStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tHUB\tHANDSHAKE\tRX\tTX\tEXPIRES")
	for _, p := range phones {
		hub := strings.Join(p.Hubs, ",")
		if !p.Local && p.Via != "-" && len(p.Hubs) > 1 {
			hub += " (via " + p.Via + ")"
		}
		hs, rx, tx := "-", "-", "-"
		if p.Local {
			hs, rx, tx = "never", strconv.FormatInt(p.RxBytes, 10), strconv.FormatInt(p.TxBytes, 10)
			if !p.LastHandshake.IsZero() {
				hs = now.Sub(p.LastHandshake).Round(time.Second).String() + " ago"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Addr, hub, hs, rx, tx, p.Expires.UTC().Format("2006-01-02"))
	}
	tw.Flush()
}

func phoneRemove(ctx context.Context, args []string) error {
	fs := newFlagSet("phone remove", "NAME")
	state := stateFlag(fs)
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	if err := api.NewClient(identity.StateDir(*state)).PhoneRemove(ctx, name); err != nil {
		return err
	}
	fmt.Printf("phone %s revoked: its hubs drop it and NATS refuses it on every node\n", name)
	return nil
}

// printPhones is status's phone section on a hub.
func printPhones(w io.Writer, st *api.Status, now time.Time) {
	if len(st.Phones) == 0 {
		return
	}
	fmt.Fprintf(w, "phones (forwarding %s):\n", st.Forwarding)
	writePhones(w, st.Phones, now)
}
