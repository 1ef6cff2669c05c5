// Package wg owns the node's userspace WireGuard data plane: a kernel TUN
// driven by wireguard-go, its UAPI socket (so `wg show` and wgctrl work), the
// overlay address and mesh route on the interface, reconciliation of the
// peer set against what the live device holds, and the cut-off filter that
// answers with TCP resets for peers that are dead or revoked (cutoff.go).
//
// It knows nothing of identities, gossip or NATS: callers hand it a private
// key, addresses and the desired peers.
package wg

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/meshnode/meshnode/mesh/defaults"
)

// Defaults for Config's zero fields, from mesh/defaults; the names are kept
// for callers outside this package (scripts/bench/wgmesh, nstest).
const (
	DefaultName       = defaults.Interface
	DefaultListenPort = defaults.ListenPort
)

// SocketDir is where UAPI sockets live; wireguard-tools and wgctrl look
// there. It is shared by every network namespace on the host.
const SocketDir = "/var/run/wireguard"

// SocketPath returns the UAPI socket path of interface name.
func SocketPath(name string) string { return SocketDir + "/" + name + ".sock" }

// Config describes the device. PrivateKey, Address and Prefix are required.
type Config struct {
	Name       string       // interface name, default mesh0
	PrivateKey wgtypes.Key  // the node's WireGuard private key
	Address    netip.Addr   // the node's overlay address, put on the interface as /128
	Prefix     netip.Prefix // the mesh prefix (an IPv6 /48 ULA), routed into the interface
	ListenPort int          // UDP port, default 51820
	MTU        int          // default 1420
	Logger     *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		c.Name = defaults.Interface
	}
	if c.ListenPort == 0 {
		c.ListenPort = defaults.ListenPort
	}
	if c.MTU == 0 {
		c.MTU = defaults.MTU
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case len(c.Name) > 15 || c.Name == "." || c.Name == ".." || containsAny(c.Name, "/ \t\n:"):
		return c, fmt.Errorf("wg: invalid interface name %q (at most 15 characters, no '/', ':' or spaces)", c.Name)
	case c.PrivateKey == (wgtypes.Key{}):
		return c, fmt.Errorf("wg: interface %s: no private key", c.Name)
	case c.ListenPort < 0 || c.ListenPort > 65535:
		return c, fmt.Errorf("wg: interface %s: listen port %d out of range", c.Name, c.ListenPort)
	case c.MTU < 1280 || c.MTU > 65535:
		return c, fmt.Errorf("wg: interface %s: MTU %d out of range (IPv6 needs at least 1280)", c.Name, c.MTU)
	case !c.Prefix.IsValid() || !c.Prefix.Addr().Is6() || c.Prefix.Addr().Is4In6():
		return c, fmt.Errorf("wg: interface %s: mesh prefix %v is not an IPv6 prefix", c.Name, c.Prefix)
	case !c.Address.Is6() || c.Address.Is4In6() || c.Address.Zone() != "":
		return c, fmt.Errorf("wg: interface %s: overlay address %v is not an IPv6 address", c.Name, c.Address)
	case !c.Prefix.Contains(c.Address):
		return c, fmt.Errorf("wg: interface %s: overlay address %s is outside mesh prefix %s", c.Name, c.Address, c.Prefix)
	}
	c.Prefix = c.Prefix.Masked()
	return c, nil
}

func containsAny(s, chars string) bool {
	for _, r := range chars {
		for _, q := range s {
			if q == r {
				return true
			}
		}
	}
	return false
}

// Device is a running WireGuard interface. Its methods are safe for
// concurrent use.
type Device struct {
	name string
	pub  wgtypes.Key // this device's public key
	addr netip.Addr  // this device's overlay address
	log  *slog.Logger
	dev  *device.Device
	uapi net.Listener // nil for devices built in-process for tests

	cut *cutoffTUN // the TUN's read filter; see cutoff.go
	// fwd is the TUN as wireguard-go sees it: the hub's userspace
	// forwarding in front of cut; see forward.go.
	fwd *forwardTUN
	// fwdMu guards phones and relayAll, what the forward set is made of
	// (SetForward, SetRelay).
	fwdMu    sync.Mutex
	phones   []netip.Addr
	relayAll bool
	// prefix is the mesh prefix: forwarding stays inside it.
	prefix netip.Prefix
	// connsTo lists local TCP connections to addresses (sockets.go);
	// tests replace it.
	connsTo func([]netip.Addr) ([]tcpConn, error)
	probes  prober   // outstanding liveness probes; see liveness.go
	cross   crossing // crossed handshakes being broken; see crossed.go

	mu           sync.Mutex // serialises Apply; guards lastEndpoint
	lastEndpoint map[wgtypes.Key]netip.AddrPort

	closeOnce  sync.Once
	closing    chan struct{} // closed when Close starts
	closeErr   error
	acceptDone chan struct{}
}

// Open creates the interface and brings it up: TUN, wireguard-go with its
// default (offloading, batching) bind, UAPI socket, private key and listen
// port, overlay /128 address, mesh prefix route, link up. The device starts
// with no peers; see Apply.
//
// Stale state from a crashed run (a UAPI socket nobody answers on, a TUN
// interface no process holds) is removed with a log line. An interface or
// socket that a running process owns is an error naming the interface.
func Open(cfg Config) (*Device, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "wg", "iface", cfg.Name)
	if err := cleanStale(cfg.Name, log); err != nil {
		return nil, err
	}
	tdev, err := tun.CreateTUN(cfg.Name, cfg.MTU)
	if err != nil {
		return nil, fmt.Errorf("wg: create TUN %s: %w", cfg.Name, err)
	}
	if n, err := tdev.Name(); err == nil && n != cfg.Name {
		tdev.Close()
		return nil, fmt.Errorf("wg: asked for interface %s, kernel named it %s", cfg.Name, n)
	}
	uapiFile, err := ipc.UAPIOpen(cfg.Name)
	if err != nil {
		tdev.Close()
		return nil, fmt.Errorf("wg: interface %s: UAPI socket %s: %w", cfg.Name, SocketPath(cfg.Name), err)
	}
	defer uapiFile.Close() // UAPIListen keeps its own descriptor
	d, err := newDevice(tdev, conn.NewDefaultBind(), cfg, log)
	if err != nil {
		os.Remove(SocketPath(cfg.Name))
		return nil, err
	}
	d.uapi, err = ipc.UAPIListen(cfg.Name, uapiFile)
	if err != nil {
		os.Remove(SocketPath(cfg.Name))
		d.dev.Close()
		return nil, fmt.Errorf("wg: interface %s: UAPI listen: %w", cfg.Name, err)
	}
	d.acceptDone = make(chan struct{})
	go d.serveUAPI()
	if err := configureLink(cfg); err != nil {
		d.Close()
		return nil, err
	}
	log.Info("wireguard device up", "address", cfg.Address, "prefix", cfg.Prefix,
		"listen_port", cfg.ListenPort, "mtu", cfg.MTU, "public_key", cfg.PrivateKey.PublicKey())
	return d, nil
}

// newDevice starts wireguard-go on tdev/bind with the key and port from cfg,
// reading tdev through the cut-off filter and the forwarder. It owns tdev
// from here on, also on error.
func newDevice(tdev tun.Device, bind conn.Bind, cfg Config, log *slog.Logger) (*Device, error) {
	cut := newCutoffTUN(tdev)
	var file *os.File
	if f, ok := tdev.(interface{ File() *os.File }); ok {
		file = f.File() // the kernel TUN's; nil for the in-memory TUN
	}
	fwd := newForwardTUN(cut, file)
	dev := device.NewDevice(fwd, bind, wgLogger(log))
	if err := dev.IpcSet("private_key=" + hex.EncodeToString(cfg.PrivateKey[:]) + "\n"); err != nil {
		dev.Close()
		return nil, fmt.Errorf("wg: interface %s: set private key: %w", cfg.Name, err)
	}
	if err := dev.IpcSet(fmt.Sprintf("listen_port=%d\n", cfg.ListenPort)); err != nil {
		dev.Close()
		return nil, fmt.Errorf("wg: interface %s: listen port %d: %w", cfg.Name, cfg.ListenPort, err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("wg: interface %s: up (listen port %d): %w", cfg.Name, cfg.ListenPort, err)
	}
	return &Device{
		name:         cfg.Name,
		pub:          cfg.PrivateKey.PublicKey(),
		addr:         cfg.Address,
		prefix:       cfg.Prefix,
		log:          log,
		dev:          dev,
		cut:          cut,
		fwd:          fwd,
		connsTo:      connsTo,
		lastEndpoint: make(map[wgtypes.Key]netip.AddrPort),
		closing:      make(chan struct{}),
	}, nil
}

// wgLogger routes wireguard-go's logs into slog. Verbose logging is wired
// only when debug is enabled, so the data path formats nothing otherwise.
func wgLogger(log *slog.Logger) *device.Logger {
	l := &device.Logger{Verbosef: device.DiscardLogf}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		l.Verbosef = func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...), "src", "wireguard") }
	}
	l.Errorf = func(format string, args ...any) { log.Error(fmt.Sprintf(format, args...), "src", "wireguard") }
	return l
}

func (d *Device) serveUAPI() {
	defer close(d.acceptDone)
	for {
		c, err := d.uapi.Accept()
		if err != nil {
			select {
			case <-d.closing:
			case <-d.dev.Wait():
			default:
				// wireguard-go stops accepting when the socket file is deleted.
				d.log.Warn("UAPI socket stopped accepting; wg show will not see this interface", "socket", SocketPath(d.name), "err", err)
			}
			return
		}
		go d.dev.IpcHandle(c)
	}
}

// Name returns the interface name.
func (d *Device) Name() string { return d.name }

// PublicKey returns the device's WireGuard public key.
func (d *Device) PublicKey() wgtypes.Key { return d.pub }

// Peers returns the live peers with their handshake and traffic counters.
func (d *Device) Peers() ([]PeerStats, error) {
	text, err := d.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("wg: interface %s: read device: %w", d.name, err)
	}
	peers, err := parseGet(text)
	if err != nil {
		return nil, fmt.Errorf("wg: interface %s: %w", d.name, err)
	}
	return peers, nil
}

// Apply makes the device's peer set equal to desired, changing only what
// differs, and returns what it changed. Peers whose key, keepalive,
// allowed IPs and endpoint already match are not touched and keep their
// sessions; a peer's allowed IPs are replaced only when the set differs.
//
// Endpoint rule: WireGuard learns a peer's current endpoint from the peer's
// own authenticated packets (roaming); a desired endpoint is a hint from
// outside and usually older. Apply writes it when the peer is added, or when
// it differs from both the live endpoint and the endpoint desired at the
// previous Apply (new information, e.g. the peer announced a new address).
// Repeating the same desired endpoint never overrides a roamed one, and a
// zero desired endpoint never clears the live one.
func (d *Device) Apply(desired []Peer) (Changes, error) {
	want, err := normalize(desired)
	if err != nil {
		return Changes{}, fmt.Errorf("wg: interface %s: %w", d.name, err)
	}
	for _, p := range want {
		// wireguard-go silently ignores such a peer, so it would be
		// "added" again on every Apply.
		if p.PublicKey == d.pub {
			return Changes{}, fmt.Errorf("wg: interface %s: desired peer %s is this device's own key", d.name, p.PublicKey)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	live, err := d.Peers()
	if err != nil {
		return Changes{}, err
	}
	ops, ch := diff(live, want, d.lastEndpoint)
	if len(ops) > 0 {
		if err := d.dev.IpcSet(setText(ops)); err != nil {
			return Changes{}, fmt.Errorf("wg: interface %s: apply %s: %w", d.name, ch, err)
		}
	}
	clear(d.lastEndpoint)
	for _, p := range want {
		if p.Endpoint.IsValid() {
			d.lastEndpoint[p.PublicKey] = p.Endpoint
		}
	}
	if !ch.None() {
		d.log.Info("wireguard peers applied", "added", ch.Added, "updated", ch.Updated, "removed", ch.Removed, "peers", len(want))
	}
	return ch, nil
}

// Close removes the interface and the UAPI socket. It is safe to call more
// than once.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		close(d.closing)
		var errs []error
		if d.uapi != nil {
			// wireguard-go's listener Close races its own inotify watcher
			// (closing the watched fd can end the watcher, which closes
			// the pipe Close then writes to), so an error here is benign;
			// the socket file is removed below either way.
			if err := d.uapi.Close(); err != nil {
				d.log.Debug("closing UAPI listener", "err", err)
			}
		}
		d.dev.Close() // closes the TUN; the kernel deletes the interface
		if d.uapi != nil {
			if err := waitLinkGone(d.name, 5*time.Second); err != nil {
				errs = append(errs, err)
			}
			<-d.acceptDone
			if err := os.Remove(SocketPath(d.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			d.closeErr = fmt.Errorf("wg: close interface %s: %w", d.name, err)
		}
		d.log.Info("wireguard device closed")
	})
	return d.closeErr
}
