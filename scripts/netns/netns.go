// Package netns is the test and demo harness for real network namespaces:
// it creates namespaces, veth links and bridges, runs commands inside them,
// cuts a namespace off its bridge (Partition, Heal) and tears everything
// down again.
//
// It does not import testing, so the demo and the benchmarks (ordinary
// programs) can use it; the *testing.T side (RequireRoot, RequireTool and
// the constructors that clean up when a test ends) is netns/netnstest.
package netns

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
)

// Run runs a command and returns its combined output, with the command line
// in the error.
func Run(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
