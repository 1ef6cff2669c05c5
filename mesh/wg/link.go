package wg

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// configureLink puts the overlay /128 on the interface, brings it up and
// routes the mesh prefix into it.
func configureLink(cfg Config) error {
	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return fmt.Errorf("wg: interface %s: %w", cfg.Name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("wg: interface %s: link up: %w", cfg.Name, err)
	}
	addr := &netlink.Addr{
		IPNet: &net.IPNet{IP: cfg.Address.AsSlice(), Mask: net.CIDRMask(128, 128)},
		// No duplicate address detection: the address is derived from the
		// node's own key, and DAD would leave it unusable for a second.
		Flags: unix.IFA_F_NODAD,
	}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("wg: interface %s: add address %s/128: %w", cfg.Name, cfg.Address, err)
	}
	route := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       &net.IPNet{IP: cfg.Prefix.Addr().AsSlice(), Mask: net.CIDRMask(cfg.Prefix.Bits(), 128)},
		Src:       cfg.Address.AsSlice(),
		Scope:     netlink.SCOPE_LINK,
	}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("wg: interface %s: route %s: %w", cfg.Name, cfg.Prefix, err)
	}
	return nil
}

// cleanStale removes what a crashed run of interface name left behind and
// refuses to touch what a running process owns.
//
// A UAPI socket that accepts a connection belongs to a live process. One
// that refuses is stale: its process died and the file stayed. A TUN
// interface with no attached queue is a leftover persistent TUN; one with
// queues is held open by a live process. Any other kind of link with the
// name belongs to someone else.
func cleanStale(name string, log *slog.Logger) error {
	sock := SocketPath(name)
	if _, err := os.Lstat(sock); err == nil {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("wg: interface %s is in use by a running process (UAPI socket %s answers)", name, sock)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("wg: interface %s: cannot tell whether UAPI socket %s is live: %w", name, sock, err)
		}
		if rmErr := os.Remove(sock); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			return fmt.Errorf("wg: interface %s: remove stale UAPI socket %s: %w", name, sock, rmErr)
		}
		log.Warn("removed stale UAPI socket left by a previous run", "socket", sock, "dial_err", err)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("wg: interface %s: look up link: %w", name, err)
	}
	tt, ok := link.(*netlink.Tuntap)
	if !ok {
		return fmt.Errorf("wg: interface %s already exists as a %s link, not ours; refusing to take it over", name, link.Type())
	}
	if tt.Queues > 0 || tt.NonPersist {
		return fmt.Errorf("wg: interface %s is in use by a running process (TUN held open, %d queue(s))", name, tt.Queues)
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("wg: interface %s: delete stale TUN: %w", name, err)
	}
	log.Warn("removed stale TUN interface left by a previous run", "iface", name)
	return nil
}

// waitLinkGone polls until interface name no longer exists.
func waitLinkGone(name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := netlink.LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				return fmt.Errorf("interface %s still present %s after close", name, timeout)
			}
			return fmt.Errorf("interface %s: %w", name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
