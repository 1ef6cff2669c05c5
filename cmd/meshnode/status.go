package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/meshnode/meshnode/identity"
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
	st, err := api.NewClient(identity.StateDir(*state)).Status(ctx)
	if errors.Is(err, api.ErrNotRunning) {
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
	fmt.Fprintf(w, "NATS %s: routes %d/%d, JetStream: %s\n", st.NATS.ServerName, st.NATS.RoutesUp, st.NATS.RoutesExpected, st.NATS.JetStream)
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
