package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"text/tabwriter"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
	"github.com/meshnode/meshnode/mesh/api"
)

func runStatus(ctx context.Context, args []string) error {
	fs := newFlagSet("status", "[--json]")
	state := stateFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	dir := identity.StateDir(*state)
	st, err := api.NewClient(dir).Status(ctx)
	if errors.Is(err, api.ErrNotRunning) {
		// A revoked node stops itself: say why it is not running.
		if r, rerr := mesh.RevokedSelf(dir); rerr == nil && r != nil {
			err = fmt.Errorf("this node has been %s (%w)", r.Summary(), err)
		}
		return &exitError{code: 2, err: err}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else {
		printStatus(os.Stdout, st, time.Now())
	}
	if !st.Healthy {
		return &exitError{code: 1, err: errors.New("")}
	}
	return nil
}

func printStatus(w io.Writer, st *api.Status, now time.Time) {
	fmt.Fprintf(w, "%s  %s  mesh %s  roles %s  %s :%d  cert expires %s (%s)\n",
		st.Name, st.Addr, st.Mesh, st.Roles, st.Interface, st.ListenPort,
		st.CertExpires.Format("2006-01-02"), ageString(st.CertExpires.Sub(now)))
	renewed := "never in this run"
	if !st.Renewal.Last.IsZero() {
		renewed = fmt.Sprintf("%s ago (%d in this run)", ageString(now.Sub(st.Renewal.Last)), st.Renewal.Count)
	}
	if !st.TicketExpires.IsZero() {
		fmt.Fprintf(w, "ticket expires %s (%s), last renewal %s, next %s\n",
			st.TicketExpires.Format(time.RFC3339), ageString(st.TicketExpires.Sub(now)), renewed, nextString(st.Renewal.Next, now))
	}
	if !st.CAExpires.IsZero() {
		fmt.Fprintf(w, "mesh CA expires %s (%s)\n", st.CAExpires.Format("2006-01-02"), ageString(st.CAExpires.Sub(now)))
	}
	if st.Degraded != "" {
		fmt.Fprintf(w, "DEGRADED: %s\n", st.Degraded)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tOVERLAY\tSTATE\tPATH\tHANDSHAKE\tTX\tRX")
	for _, m := range st.Members {
		hs := "-"
		if !m.LastHandshake.IsZero() {
			hs = ageString(now.Sub(m.LastHandshake)) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Addr, m.State, m.Path, hs, bytesString(m.TxBytes), bytesString(m.RxBytes))
	}
	tw.Flush()
	if len(st.Revoked) > 0 {
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REVOKED\tOVERLAY\tWHEN\tBY\tREASON")
		for _, r := range st.Revoked {
			name, by, reason := r.Name, r.Issuer, r.Reason
			if name == "" {
				name = r.Node.ShortString()
			}
			if by == "" {
				by = "-"
			}
			if reason == "" {
				reason = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, r.Addr, r.Time.UTC().Format(time.RFC3339), by, reason)
		}
		tw.Flush()
	}
	printPathNotes(w, st)
	fmt.Fprintln(w, natsStatusLine(st.NATS))
	printPhones(w, st, now)
	if st.Healthy {
		fmt.Fprintln(w, "healthy")
	} else {
		for _, p := range st.Problems {
			fmt.Fprintln(w, "degraded:", p)
		}
	}
}

func ageString(d time.Duration) string {
	switch {
	case d == math.MinInt64:
		// A zero time subtracted from now saturates here, and -d would
		// be d again: recursing forever.
		return "-" + ageString(math.MaxInt64)
	case d < 0:
		return "-" + ageString(-d)
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func nextString(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return "in " + ageString(t.Sub(now))
}

// natsStatusLine is status's NATS line: a core member's routes and leaves, or
// the core member a leaf is connected to.
func natsStatusLine(n api.NATSStatus) string {
	if n.Role == api.NATSRoleLeaf {
		of := n.LeafOf
		if of == "" {
			of = "none"
		}
		return fmt.Sprintf("NATS %s: leaf, connected to core member %s (of %d), JetStream: %s", n.ServerName, of, n.LeafCore, n.JetStream)
	}
	leaves := ""
	if n.Leaves > 0 {
		leaves = fmt.Sprintf(", %d leaves", n.Leaves)
	}
	return fmt.Sprintf("NATS %s: core, routes %d/%d%s, JetStream: %s", n.ServerName, n.RoutesUp, n.RoutesExpected, leaves, n.JetStream)
}
