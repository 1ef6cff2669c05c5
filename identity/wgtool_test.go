// The cross-check with the real wg tool lives in the external test package:
// the netns harness imports packages that import identity.
package identity_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/scripts/netns/netnstest"
)

// TestWireGuardPubkeyTool feeds the derived private key to the real
// `wg pubkey` and checks it prints our public key: what the kernel and
// wireguard-go will compute from the key we configure.
func TestWireGuardPubkeyTool(t *testing.T) {
	wg := netnstest.RequireTool(t, "wg")
	var seeds []identity.Seed
	var counting identity.Seed
	for i := range counting {
		counting[i] = byte(i + 1)
	}
	fresh, err := identity.NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, identity.Seed{}, counting, fresh)
	for _, s := range seeds {
		id := identity.FromSeed(s)
		cmd := exec.Command(wg, "pubkey")
		cmd.Stdin = strings.NewReader(id.WireGuardPrivate().String() + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("wg pubkey: %v", err)
		}
		if got, want := strings.TrimSpace(string(out)), id.WireGuardPublic().String(); got != want {
			t.Errorf("wg pubkey of the key derived for %s = %s, WireGuardPublic() = %s", id.Public(), got, want)
		}
	}
}
