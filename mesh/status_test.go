package mesh

import (
	"strings"
	"testing"

	"github.com/meshnode/meshnode/discovery"
)

// TestAPIState keeps discovery's states and the local API's in step: every
// state discovery can name has the same name in api.State, so status JSON
// says what it said when it carried discovery's own string, and a state
// added to discovery alone fails here instead of showing as "unknown".
func TestAPIState(t *testing.T) {
	n := 0
	for s := discovery.State(0); !strings.HasPrefix(s.String(), "state("); s++ {
		if got := apiState(s).String(); got != s.String() {
			t.Errorf("apiState(%s) = %s", s, got)
		}
		n++
	}
	if n != 4 {
		t.Errorf("checked %d states, want unknown, alive, dead, left", n)
	}
}
