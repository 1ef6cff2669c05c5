package main

import (
	"fmt"
	"io"
	"slices"

	"github.com/meshnode/meshnode/mesh/api"
)

// printPathNotes says, under the member table, what a relayed path means
// (the hub sees the traffic) and which endpoints hubs see for this node.
func printPathNotes(w io.Writer, st *api.Status) {
	if len(st.Observed) > 0 {
		fmt.Fprintf(w, "endpoints as hubs see them: %v\n", st.Observed)
	}
	var hubs []string
	for _, m := range st.Members {
		if m.Via != "" && !slices.Contains(hubs, m.Via) {
			hubs = append(hubs, m.Via)
		}
	}
	for _, h := range hubs {
		fmt.Fprintf(w, "relayed through %s: it decrypts and re-encrypts that traffic (NATS stays TLS inside it)\n", h)
	}
}
