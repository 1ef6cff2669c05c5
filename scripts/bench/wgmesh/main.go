// Command wgmesh is the benchmark's meshnode side: one mesh/wg device with
// one peer, exactly as the node brings it up. It runs until SIGINT/SIGTERM,
// then closes the device.
//
//	wgmesh -iface NAME -listen-port N -key-file FILE -addr ADDR -prefix PREFIX \
//	       -peer-key PUB -peer-endpoint IP:PORT -peer-addr ADDR
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/meshnode/meshnode/mesh/defaults"
	"github.com/meshnode/meshnode/mesh/wg"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func main() {
	iface := flag.String("iface", defaults.Interface, "interface name")
	port := flag.Int("listen-port", defaults.ListenPort, "UDP listen port")
	keyFile := flag.String("key-file", "", "file holding the base64 private key (wg genkey)")
	addr := flag.String("addr", "", "overlay address of this node")
	prefix := flag.String("prefix", "", "mesh prefix")
	peerKey := flag.String("peer-key", "", "peer public key (base64)")
	peerEP := flag.String("peer-endpoint", "", "peer endpoint IP:PORT")
	peerAddr := flag.String("peer-addr", "", "peer overlay address")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "wgmesh: %v\n", err)
		os.Exit(1)
	}
	raw, err := os.ReadFile(*keyFile)
	if err != nil {
		fail(err)
	}
	key, err := wgtypes.ParseKey(strings.TrimSpace(string(raw)))
	if err != nil {
		fail(fmt.Errorf("%s: %w", *keyFile, err))
	}
	pk, err := wgtypes.ParseKey(*peerKey)
	if err != nil {
		fail(fmt.Errorf("-peer-key: %w", err))
	}
	cfg := wg.Config{Name: *iface, PrivateKey: key, ListenPort: *port, Logger: log}
	if cfg.Address, err = netip.ParseAddr(*addr); err != nil {
		fail(fmt.Errorf("-addr: %w", err))
	}
	if cfg.Prefix, err = netip.ParsePrefix(*prefix); err != nil {
		fail(fmt.Errorf("-prefix: %w", err))
	}
	peer := wg.Peer{PublicKey: pk}
	if peer.Endpoint, err = netip.ParseAddrPort(*peerEP); err != nil {
		fail(fmt.Errorf("-peer-endpoint: %w", err))
	}
	pa, err := netip.ParseAddr(*peerAddr)
	if err != nil {
		fail(fmt.Errorf("-peer-addr: %w", err))
	}
	peer.AllowedIPs = []netip.Prefix{netip.PrefixFrom(pa, pa.BitLen())}

	dev, err := wg.Open(cfg)
	if err != nil {
		fail(err)
	}
	if _, err := dev.Apply([]wg.Peer{peer}); err != nil {
		dev.Close()
		fail(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if err := dev.Close(); err != nil {
		fail(err)
	}
}
