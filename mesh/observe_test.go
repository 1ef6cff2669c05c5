package mesh

import (
	"fmt"
	"testing"

	"github.com/meshnode/meshnode/identity"
)

// What a member advertises: mapped endpoints by hub name, then its local
// ones, without duplicates (a public member's hub sees its local endpoint),
// at most the meta's four.
func TestAdvertised(t *testing.T) {
	h1, h2 := identity.NodePublic{1}, identity.NodePublic{2}
	obs := map[identity.NodePublic]observation{
		h2: {hub: "hub2", ep: ap("198.51.100.3:20002")},
		h1: {hub: "hub1", ep: ap("198.51.100.3:20001")},
	}
	local := aps("192.168.3.2:51820", "[2001:db8::3]:51820", "10.0.0.3:51820")
	if got := fmt.Sprint(advertised(obs, local)); got != "[198.51.100.3:20001 198.51.100.3:20002 192.168.3.2:51820 [2001:db8::3]:51820]" {
		t.Errorf("advertised %s", got)
	}
	if h := natHintOf(advertised(obs, local)); h != NATPerDestination {
		t.Errorf("hint %d", h)
	}
	pub := map[identity.NodePublic]observation{h1: {hub: "hub1", ep: ap("192.0.2.5:51820")}}
	if got := fmt.Sprint(advertised(pub, aps("192.0.2.5:51820"))); got != "[192.0.2.5:51820]" {
		t.Errorf("public member advertises %s", got)
	}
	if h := natHintOf(aps("192.0.2.5:51820")); h != NATUnknown {
		t.Errorf("public hint %d", h)
	}
}
