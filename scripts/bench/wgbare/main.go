// Command wgbare is the benchmark's reference: a bare wireguard-go
// interface with the library's default settings (kernel TUN, default bind,
// UAPI socket) and nothing else, like running upstream wireguard-go in the
// foreground. Configure it with wg and ip; it runs until SIGINT/SIGTERM.
//
//	wgbare IFACE
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: wgbare IFACE")
		os.Exit(2)
	}
	name := os.Args[1]
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "wgbare %s: %s: %v\n", name, what, err)
		os.Exit(1)
	}
	tdev, err := tun.CreateTUN(name, device.DefaultMTU)
	if err != nil {
		fail("create TUN", err)
	}
	uapiFile, err := ipc.UAPIOpen(name)
	if err != nil {
		fail("UAPI socket", err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, name+": "))
	uapi, err := ipc.UAPIListen(name, uapiFile)
	if err != nil {
		fail("UAPI listen", err)
	}
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case <-dev.Wait():
	}
	uapi.Close()
	dev.Close()
}
