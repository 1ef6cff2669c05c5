package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/image/update"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/mesh/updater"
)

const updateUsage = `usage: meshnode update [--state DIR] COMMAND ...
  sign BUNDLE [--valid D]                 sign an update bundle with the mesh CA (admin)
  publish BUNDLE [--reboot P] [--to NAMES | --percent N] [--replicas N]
                                          store the bundle in JetStream and make it the release appliances install
  push BUNDLE --to NAME [--reboot P]      send one appliance the bundle directly (no JetStream needed)
  status [--json] [--wait D]              what every appliance runs and where its update is
  inspect BUNDLE                          print a bundle's manifest and check its files
reboot policy P: now (default), manual, or "at HH:MM" (UTC)
An unsigned bundle (as meshnode image build writes it) is signed on the way when this node holds the CA key.`

func runUpdate(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(os.Stderr, updateUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "sign":
		return updateSign(args[1:])
	case "publish":
		return updatePublish(ctx, args[1:])
	case "push":
		return updatePush(ctx, args[1:])
	case "status":
		return updateStatus(ctx, args[1:])
	case "inspect":
		return updateInspect(args[1:])
	}
	fmt.Fprintln(os.Stderr, updateUsage)
	return fmt.Errorf("unknown update command %q", args[0])
}

// bundleArg parses flags around one BUNDLE argument (flags may come before
// or after it).
func bundleArg(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", errors.New("missing BUNDLE (the update/ directory beside the built disk image)")
	}
	dir := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return dir, nil
}

// defaultValidity is how long a signed manifest is accepted: long enough
// for a staged rollout, short enough that a leaked old bundle stops
// working (generations stop replays in any case).
const defaultValidity = 90 * 24 * time.Hour

func updateSign(args []string) error {
	fs := newFlagSet("update sign", "BUNDLE [--valid D]")
	state := stateFlag(fs)
	valid := fs.Duration("valid", defaultValidity, "how long boxes accept the signed manifest")
	dir, err := bundleArg(fs, args)
	if err != nil {
		return err
	}
	b, err := update.ReadBundle(dir)
	if err != nil {
		return err
	}
	if err := signBundle(identity.StateDir(*state), dir, b, *valid); err != nil {
		return err
	}
	fmt.Printf("%s: signed %s, valid until %s\n", dir, b.Manifest, b.Manifest.NotAfter.Format(time.RFC3339))
	return nil
}

// signBundle signs b with the CA key of state and writes the manifest back.
func signBundle(state identity.StateDir, dir string, b *update.Bundle, valid time.Duration) error {
	trust, err := identity.LoadTrust(state.CACertPath())
	if err != nil {
		return err
	}
	pemKey, err := os.ReadFile(state.CAKeyPath())
	if err != nil {
		return fmt.Errorf("this node cannot sign updates: %w (sign on an admin node, which holds the CA key)", err)
	}
	key, err := identity.ParseCAKey(pemKey)
	if err != nil {
		return fmt.Errorf("mesh CA key %s: %w", state.CAKeyPath(), err)
	}
	if err := b.Sign(key, trust.Public, time.Now(), valid); err != nil {
		return err
	}
	return update.WriteManifest(dir, b.Manifest)
}

// loadForSending reads a bundle, signs it if it is unsigned and this node
// can, and checks it the way a box will (unless unchecked): a refusal is
// cheaper here than after the upload.
func loadForSending(state identity.StateDir, dir string, unchecked bool) (*update.Bundle, error) {
	read := update.ReadBundle
	if unchecked {
		read = update.ReadBundleUnchecked
	}
	b, err := read(dir)
	if err != nil {
		return nil, err
	}
	if !b.Manifest.Signed() && !unchecked {
		if err := signBundle(state, dir, b, defaultValidity); err != nil {
			return nil, fmt.Errorf("%s is unsigned: %w", dir, err)
		}
		fmt.Fprintf(os.Stderr, "signed %s with the mesh CA, valid until %s\n", b.Manifest, b.Manifest.NotAfter.Format(time.RFC3339))
	}
	if unchecked {
		return b, nil
	}
	trust, err := identity.LoadTrust(state.CACertPath())
	if err != nil {
		return nil, err
	}
	if err := b.Manifest.Verify(trust.Public); err != nil {
		return nil, err
	}
	if time.Now().After(b.Manifest.NotAfter) {
		return nil, fmt.Errorf("%s: expired at %s: sign it again (meshnode update sign)", b.Manifest, b.Manifest.NotAfter.Format(time.RFC3339))
	}
	return b, nil
}

// progressLine prints "label 42% (21.0 of 50.0 MB)" in place on a terminal,
// and every 10% otherwise.
func progressLine(label string) updater.Progress {
	last := -1
	return func(done, total uint64) {
		pct := int(done * 100 / max(total, 1))
		if pct == last || (pct%10 != 0 && pct != 100) {
			return
		}
		last = pct
		fmt.Fprintf(os.Stderr, "%s %3d%% (%.1f of %.1f MB)\n", label, pct, float64(done)/1e6, float64(total)/1e6)
	}
}

func updatePublish(ctx context.Context, args []string) error {
	fs := newFlagSet("update publish", "BUNDLE [flags]")
	state := stateFlag(fs)
	reboot := fs.String("reboot", updater.RebootNow, `when boxes restart into the update: now, manual or "at HH:MM" (UTC)`)
	to := fs.String("to", "", "comma-separated names: only these boxes take the release")
	percent := fs.Int("percent", 0, "only this share of the fleet (1-99, the same boxes first every time); 0: every box")
	replicas := fs.Int("replicas", 0, "JetStream replicas of the release buckets (default: live members, at most 3)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	unchecked := fs.Bool("unchecked", false, "send even what the boxes will refuse (for testing their checks)")
	dir, err := bundleArg(fs, args)
	if err != nil {
		return err
	}
	policy, err := updater.ParseReboot(*reboot)
	if err != nil {
		return err
	}
	names, err := nameList(*to)
	if err != nil {
		return err
	}
	if *percent < 0 || *percent > 100 || (*percent != 0 && len(names) > 0) {
		return errors.New("--percent wants 0 to 100, and not together with --to")
	}
	sd := identity.StateDir(*state)
	b, err := loadForSending(sd, dir, *unchecked)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *replicas == 0 {
		*replicas = defaultReplicas(ctx, sd)
	}
	nc, err := connectLocal(ctx, sd, "")
	if err != nil {
		return err
	}
	defer nc.Close()
	start := time.Now()
	if err := updater.Publish(ctx, nc, b, updater.Release{Reboot: policy, Names: names, Percent: *percent}, *replicas, progressLine("publish")); err != nil {
		return err
	}
	who := "every appliance"
	switch {
	case len(names) > 0:
		who = strings.Join(names, ", ")
	case *percent > 0 && *percent < 100:
		who = fmt.Sprintf("%d%% of the appliances", *percent)
	}
	fmt.Printf("published %s (%.1f MB, %d replicas) in %s for %s, reboot %s; follow it with: meshnode update status\n",
		b.Manifest, float64(b.Manifest.TotalSize())/1e6, *replicas, time.Since(start).Round(100*time.Millisecond), who, policy)
	return nil
}

func nameList(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if err := identity.ValidateName(n); err != nil {
			return nil, fmt.Errorf("--to: %w", err)
		}
		out = append(out, n)
	}
	return out, nil
}

// defaultReplicas is the number of live members (this node included), at
// most 3: the release is replicated like the mesh's streams.
func defaultReplicas(ctx context.Context, sd identity.StateDir) int {
	st, err := api.NewClient(sd).Status(ctx)
	if err != nil {
		return 1
	}
	n := 1
	for _, m := range st.Members {
		if m.State == api.StateAlive {
			n++
		}
	}
	return min(n, 3)
}

func updatePush(ctx context.Context, args []string) error {
	fs := newFlagSet("update push", "BUNDLE --to NAME [flags]")
	state := stateFlag(fs)
	to := fs.String("to", "", "the appliance to update (its name in the mesh)")
	reboot := fs.String("reboot", updater.RebootNow, `when the box restarts into the update: now, manual or "at HH:MM" (UTC)`)
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	unchecked := fs.Bool("unchecked", false, "send even what the box will refuse (for testing its checks)")
	dir, err := bundleArg(fs, args)
	if err != nil {
		return err
	}
	if err := identity.ValidateName(*to); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	policy, err := updater.ParseReboot(*reboot)
	if err != nil {
		return err
	}
	sd := identity.StateDir(*state)
	b, err := loadForSending(sd, dir, *unchecked)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	nc, err := connectLocal(ctx, sd, "")
	if err != nil {
		return err
	}
	defer nc.Close()
	start := time.Now()
	res, err := updater.Push(ctx, nc, *to, b, policy, progressLine("push "+*to))
	if err != nil {
		return err
	}
	when := "when it next restarts (reboot manual)"
	if !res.RebootAt.IsZero() {
		when = "at " + res.RebootAt.Format(time.RFC3339)
	}
	fmt.Printf("%s took %s in %s: loader entry %s, reboots %s\n", *to, b.Manifest, time.Since(start).Round(100*time.Millisecond), res.Entry, when)
	return nil
}

func updateStatus(ctx context.Context, args []string) error {
	fs := newFlagSet("update status", "[--json] [--wait D]")
	state := stateFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	wait := fs.Duration("wait", 3*time.Second, "how long to collect answers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	sd := identity.StateDir(*state)
	ctx, cancel := context.WithTimeout(ctx, *wait+10*time.Second)
	defer cancel()
	var members []string
	if st, err := api.NewClient(sd).Status(ctx); err == nil {
		for _, m := range st.Members {
			if m.State == api.StateAlive {
				members = append(members, m.Name)
			}
		}
	}
	nc, err := connectLocal(ctx, sd, "")
	if err != nil {
		return err
	}
	defer nc.Close()
	// Stop early once every live member answered: most are appliances.
	got, err := updater.Status(ctx, nc, len(members), *wait)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(got)
	}
	printUpdateStatus(os.Stdout, got, members, time.Now())
	return nil
}

func printUpdateStatus(w io.Writer, got []updater.NodeStatus, members []string, now time.Time) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSLOT\tRUNNING\tPHASE\tUPDATE\tSINCE\tDETAIL")
	answered := map[string]bool{}
	for _, s := range got {
		answered[s.Name] = true
		target := "-"
		if s.Target != 0 {
			target = fmt.Sprintf("%s (gen %d)", s.TargetRelease, s.Target)
		}
		phase := s.Phase
		if s.Phase == updater.PhaseDownloading || s.Phase == updater.PhaseReceiving {
			phase = fmt.Sprintf("%s %d%%", s.Phase, s.Percent)
		}
		detail := s.Message
		if !s.RebootAt.IsZero() && s.Phase == updater.PhaseWritten {
			detail = "reboots at " + s.RebootAt.Format(time.RFC3339)
		}
		if detail == "" && s.LastResult != "" {
			detail = "last: " + s.LastResult
		}
		fmt.Fprintf(tw, "%s\t%s\t%s (gen %d)\t%s\t%s\t%s\t%s\n", s.Name, dash(s.Slot), s.Release, s.Generation, phase, target,
			ageString(now.Sub(s.Since))+" ago", dash(detail))
	}
	for _, m := range members {
		if !answered[m] {
			fmt.Fprintf(tw, "%s\t-\t-\tno answer\t-\t-\tno update agent (not an appliance, or not up)\n", m)
		}
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func updateInspect(args []string) error {
	fs := newFlagSet("update inspect", "BUNDLE")
	state := stateFlag(fs)
	dir, err := bundleArg(fs, args)
	if err != nil {
		return err
	}
	b, err := update.ReadBundleUnchecked(dir)
	if err != nil {
		return err
	}
	m := b.Manifest
	fmt.Printf("%s\n  arch %s\n", m, m.Arch)
	switch {
	case !m.Signed():
		fmt.Println("  signature: none (meshnode update sign)")
	default:
		fmt.Printf("  signed by CA key id %x, valid until %s\n", m.CAKeyID, m.NotAfter.Format(time.RFC3339))
		if trust, err := identity.LoadTrust(identity.StateDir(*state).CACertPath()); err == nil {
			if err := m.Verify(trust.Public); err != nil {
				fmt.Printf("  signature: %v\n", err)
			} else {
				fmt.Printf("  signature: good (mesh %s)\n", trust.Mesh)
			}
		}
	}
	for _, f := range m.Files {
		fmt.Printf("  %-10s %10d bytes  sha256 %s\n", f.Name, f.Size, f.Hex())
	}
	if err := update.CheckFiles(m, b.Files); err != nil {
		return err
	}
	fmt.Println("  files: match the manifest")
	return nil
}
