package api

import "fmt"

// State is what a node believes about a member, as the local API reports
// it. It is the API's own type, not discovery's: the API is a contract
// with the CLI and scripts, and must not pull memberlist into them. mesh
// converts, and a test there keeps the two lists in step.
type State int

const (
	// StateUnknown: known from the persisted table or an enrollment, not
	// yet seen by gossip since the node started.
	StateUnknown State = iota
	// StateAlive: gossip sees the member.
	StateAlive
	// StateDead: gossip lost the member.
	StateDead
	// StateLeft: the member left on purpose.
	StateLeft
)

var stateNames = [...]string{"unknown", "alive", "dead", "left"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// MarshalText implements encoding.TextMarshaler: JSON carries the name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. An unknown name is an
// error, not StateUnknown: the CLI and the daemon are one binary, so a
// name this side does not know means a mismatch worth hearing about.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if string(b) == n {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("unknown member state %q", b)
}
