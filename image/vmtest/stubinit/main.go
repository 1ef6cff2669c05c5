// Command stubinit is /init for the image tests: the real PID 1 code
// (image/boot) with a stand-in node runner, so the boot path, the token
// handling and the persistence of perm are tested while the node itself is
// not wired into the appliance. It is never part of a product image.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/image/boot"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "stubinit: runs only as PID 1 inside the test image")
		os.Exit(2)
	}
	boot.Main(run)
}

// run stands in for the node: on first boot it creates a random "identity"
// and its name on perm, writes a "ticket" last (as the node does: PID 1
// reads the ticket as "enrolled") and consumes the token, then reports
// ready with an "overlay" derived from that identity, so a second boot
// shows whether perm kept it. The name comes from perm, like the real
// node's (from its ticket), so a box whose config.toml is unreadable still
// reports it.
func run(ctx context.Context, bc boot.BootConfig) error {
	dir := identity.StateDir(bc.StateDir)
	idFile, nameFile := filepath.Join(bc.StateDir, "stub-identity"), filepath.Join(bc.StateDir, "stub-name")
	if bc.FirstBoot {
		id := make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return err
		}
		if err := writeDurable(idFile, []byte(hex.EncodeToString(id))); err != nil {
			return err
		}
		if err := writeDurable(nameFile, []byte(bc.Config.Name)); err != nil {
			return err
		}
		if err := writeDurable(dir.TicketPath(), []byte("stub ticket\n")); err != nil {
			return err
		}
		if err := bc.ConsumeToken(); err != nil {
			return err
		}
	}
	id, err := os.ReadFile(idFile)
	if err != nil {
		return fmt.Errorf("stub identity: %w", err)
	}
	name, err := os.ReadFile(nameFile)
	if err != nil {
		return fmt.Errorf("stub name: %w", err)
	}
	bc.Ready(string(name), "stub-"+string(id))
	<-ctx.Done()
	return ctx.Err()
}

// writeDurable is what the node does with its identity: temp file, fsync,
// rename, fsync the directory, so a power cut right after keeps it.
func writeDurable(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
