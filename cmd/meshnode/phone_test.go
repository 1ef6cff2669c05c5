package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"rsc.io/qr"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
)

// goldenPhoneAdd is a fixed phone-add answer: keys from fixed seeds, one
// hub reachable over IPv4 and a second over IPv6.
func goldenPhoneAdd(t *testing.T) *api.PhoneAddResponse {
	t.Helper()
	var s0, s1, s2 identity.Seed
	for i := range s1 {
		s1[i], s2[i] = 1, 2
	}
	phone, hub1, hub2 := identity.FromSeed(s0), identity.FromSeed(s1), identity.FromSeed(s2)
	prefix := netip.MustParsePrefix("fdb4:b7e4:b5ab::/48")
	priv := phone.WireGuardPrivate()
	return &api.PhoneAddResponse{
		Name: "pixel", Addr: identity.OverlayAddr(prefix, phone.Public()), Prefix: prefix,
		WireGuardPrivate: priv.String(), NKeySeed: string(phone.NKeySeedText()), InboxPrefix: identity.PhoneInboxPrefix("pixel"),
		Tunnels: []api.PhoneHub{
			{Name: "alpha", PublicKey: hub1.WireGuardPublic(), Endpoint: netip.MustParseAddrPort("203.0.113.7:51820"),
				Addr: identity.OverlayAddr(prefix, hub1.Public()), NATSURL: "tls://[" + identity.OverlayAddr(prefix, hub1.Public()).String() + "]:4222"},
			{Name: "beta", PublicKey: hub2.WireGuardPublic(), Endpoint: netip.MustParseAddrPort("[2001:db8::7]:51820")},
		},
	}
}

// TestWGQuickConfigGolden pins the config text: only keys both stock phone
// apps parse, the phone's /128, the mesh /48 as AllowedIPs, MTU 1280,
// keepalive 25, and an IPv6 endpoint in brackets.
func TestWGQuickConfigGolden(t *testing.T) {
	r := goldenPhoneAdd(t)
	const want0 = `[Interface]
PrivateKey = gOyYdy/hl8RoyKLf5IEqlxw31986IW8JN3cJqhHbdn4=
Address = fdb4:b7e4:b5ab:139e:3940:e64b:5491:7220/128
MTU = 1280

[Peer]
PublicKey = paK+w6BRoPVH3k6QF7Hf8q245yGQPr13R3/qwubft0c=
AllowedIPs = fdb4:b7e4:b5ab::/48
Endpoint = 203.0.113.7:51820
PersistentKeepalive = 25
`
	got := WGQuickConfig(r, 0)
	if got != want0 {
		t.Errorf("config changed:\n%s\nwant:\n%s", got, want0)
	}
	if got1 := WGQuickConfig(r, 1); !strings.Contains(got1, "Endpoint = [2001:db8::7]:51820\n") || tunnelName(r, 1) != "pixel@beta" {
		t.Errorf("second tunnel %q:\n%s", tunnelName(r, 1), got1)
	}
	// Every key is one the apps accept.
	allowed := map[string]bool{"PrivateKey": true, "Address": true, "MTU": true, "PublicKey": true, "AllowedIPs": true, "Endpoint": true, "PersistentKeepalive": true}
	for _, line := range strings.Split(got, "\n") {
		if k, _, ok := strings.Cut(line, " = "); ok && !allowed[k] {
			t.Errorf("key %q is not one both stock apps parse", k)
		}
	}
	code, err := qr.Encode(got, qr.M)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: one-hub config %d bytes, QR version %d-M (%d modules, %d×%d terminal cells)",
		len(got), qrVersion(code), code.Size, code.Size+2*qrQuiet, (code.Size+2*qrQuiet+1)/2)
}

// TestPhoneQRDecodes: the PNG and the terminal rendering both decode (with
// zbarimg, a decoder that is not the encoder) to exactly the config.
func TestPhoneQRDecodes(t *testing.T) {
	zbar := netnstest.RequireTool(t, "zbarimg")
	cfg := WGQuickConfig(goldenPhoneAdd(t), 0)
	code, err := qr.Encode(cfg, qr.M)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	code.Scale = 8
	pngPath := filepath.Join(dir, "qr.png")
	if err := os.WriteFile(pngPath, code.PNG(), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := zbarDecode(t, zbar, pngPath); got != cfg {
		t.Errorf("PNG decodes to %q, want %q", got, cfg)
	}

	var term bytes.Buffer
	WriteTerminalQR(&term, code)
	img := terminalToImage(t, term.String(), 6)
	termPath := filepath.Join(dir, "term.png")
	f, err := os.Create(termPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := zbarDecode(t, zbar, termPath); got != cfg {
		t.Errorf("terminal rendering decodes to %q, want %q", got, cfg)
	}
	lines := strings.Count(term.String(), "\n")
	if want := (code.Size + 2*qrQuiet + 1) / 2; lines != want {
		t.Errorf("terminal QR is %d lines, want %d", lines, want)
	}
}

func zbarDecode(t *testing.T, zbar, path string) string {
	t.Helper()
	out, err := exec.Command(zbar, "--raw", "-q", "-Sdisable", "-Sqrcode.enable", path).Output()
	if err != nil {
		t.Fatalf("zbarimg %s: %v", path, err)
	}
	// zbarimg ends the symbol's data with a newline of its own.
	return strings.TrimSuffix(string(out), "\n")
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// terminalToImage renders half-block text as a terminal with the
// colours WriteTerminalQR asks for would: each character is one module
// wide and two tall; scale pixels per module.
func terminalToImage(t *testing.T, text string, scale int) image.Image {
	t.Helper()
	rows := strings.Split(strings.TrimSuffix(ansi.ReplaceAllString(text, ""), "\n"), "\n")
	w := len([]rune(rows[0]))
	img := image.NewGray(image.Rect(0, 0, w*scale, 2*len(rows)*scale))
	for y, row := range rows {
		for x, r := range []rune(row) {
			var top, bottom bool
			switch r {
			case '█':
				top, bottom = true, true
			case '▀':
				top = true
			case '▄':
				bottom = true
			case ' ':
			default:
				t.Fatalf("unexpected character %q in the terminal QR", r)
			}
			for dy := range 2 * scale {
				dark := top
				if dy >= scale {
					dark = bottom
				}
				c := color.Gray{0xff}
				if dark {
					c = color.Gray{0}
				}
				for dx := range scale {
					img.SetGray(x*scale+dx, 2*y*scale+dy, c)
				}
			}
		}
	}
	return img
}

func TestParseTTL(t *testing.T) {
	for in, want := range map[string]time.Duration{"365d": 365 * 24 * time.Hour, "1d": 24 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseTTL(in); err != nil || got != want {
			t.Errorf("parseTTL(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"0d", "-1d", "xd", "0s", "soon"} {
		if _, err := parseTTL(in); err == nil || !strings.Contains(err.Error(), "--ttl") {
			t.Errorf("parseTTL(%q): %v", in, err)
		}
	}
}
