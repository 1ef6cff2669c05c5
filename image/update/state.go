package update

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// StateFormat is the version of the state file's JSON.
const StateFormat = 1

// Phases of a pending update, in order.
const (
	PhaseWriting = "writing" // the inactive slot's entry is gone and its files are being replaced
	PhaseWritten = "written" // files and entry written: the next boot tries the slot
	PhaseTrial   = "trial"   // the slot has booted and is on probation until healthy
)

// Results of an update, as the last outcome records them.
const (
	ResultBlessed     = "blessed"
	ResultRolledBack  = "rolled back"
	ResultInterrupted = "interrupted"
)

// maxRolledBack bounds the list of generations a box refuses because they
// rolled back here: newer ones supersede them anyway.
const maxRolledBack = 16

// State is the update record on the perm partition: it survives every
// slot change, so it is where the generation floor lives (a box never
// installs a generation at or below it, whatever slot it boots) and where a
// trial boot finds what it is on trial for.
type State struct {
	Format int `json:"format"`
	// Installed is the generation of the last update that was blessed
	// here (or of the image, once a boot has seen it): the floor.
	Installed        uint64   `json:"installed_generation"`
	InstalledRelease string   `json:"installed_release,omitempty"`
	Pending          *Pending `json:"pending,omitempty"`
	Last             *Outcome `json:"last,omitempty"`
	RolledBack       []uint64 `json:"rolled_back,omitempty"`
}

// Pending is an update written (or being written) to the inactive slot.
type Pending struct {
	Generation uint64    `json:"generation"`
	Release    string    `json:"release"`
	Slot       string    `json:"slot"`
	Phase      string    `json:"phase"`
	Since      time.Time `json:"since"`
	TrialBoots int       `json:"trial_boots,omitempty"`
	// Failure is why the trial gave up, written before it marks the slot
	// bad and reboots, so that the old slot can say why it is back.
	Failure string `json:"failure,omitempty"`
}

// Outcome is how the last update ended.
type Outcome struct {
	Generation uint64    `json:"generation"`
	Release    string    `json:"release"`
	Result     string    `json:"result"`
	Reason     string    `json:"reason,omitempty"`
	At         time.Time `json:"at"`
}

func (o *Outcome) String() string {
	if o.Reason == "" {
		return fmt.Sprintf("generation %d (%s) %s", o.Generation, o.Release, o.Result)
	}
	return fmt.Sprintf("generation %d (%s) %s: %s", o.Generation, o.Release, o.Result, o.Reason)
}

// LoadState reads the state file; a missing one is an empty state.
func LoadState(path string) (State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{Format: StateFormat}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("update state: %w", err)
	}
	var s State
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return State{}, fmt.Errorf("update state %s: %w", path, err)
	}
	if s.Format != StateFormat {
		return State{}, fmt.Errorf("update state %s: format %d, this build reads %d", path, s.Format, StateFormat)
	}
	if p := s.Pending; p != nil && (!ValidSlot(p.Slot) || p.Generation == 0) {
		return State{}, fmt.Errorf("update state %s: pending update with slot %q generation %d", path, p.Slot, p.Generation)
	}
	return s, nil
}

// Save writes the state file atomically and durably.
func (s State) Save(path string) error {
	s.Format = StateFormat
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("update state: %w", err)
	}
	return nil
}

func (s *State) clone() State {
	c := *s
	if s.Pending != nil {
		p := *s.Pending
		c.Pending = &p
	}
	if s.Last != nil {
		o := *s.Last
		c.Last = &o
	}
	c.RolledBack = append([]uint64(nil), s.RolledBack...)
	return c
}

func (s *State) addRolledBack(gen uint64) {
	s.RolledBack = append(s.RolledBack, gen)
	if len(s.RolledBack) > maxRolledBack {
		s.RolledBack = s.RolledBack[len(s.RolledBack)-maxRolledBack:]
	}
}
