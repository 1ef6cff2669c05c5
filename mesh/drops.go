package mesh

import "log/slog"

// dropLog logs each entry a plan drops once, when it first appears, and
// again only if it went away and came back: reconcile runs every 5 s, and
// a standing collision must not fill the log. It is used under
// Node.reconcileMu.
type dropLog struct {
	seen map[string]bool
}

func (l *dropLog) note(log *slog.Logger, drops []Drop) {
	now := make(map[string]bool, len(drops))
	for _, d := range drops {
		k := d.String()
		now[k] = true
		if l.seen[k] {
			continue
		}
		args := []any{"member", d.Member, "node", d.Node.ShortString(), "reason", d.Reason}
		if d.Route.IsValid() {
			log.Warn("route of a member not routed through it", append(args, "route", d.Route)...)
		} else {
			log.Warn("member left out of WireGuard", args...)
		}
	}
	l.seen = now
}

// Problems are the plan's drops as status lines, e.g. "member x dropped
// from WireGuard: its WireGuard key is also used by member y".
func (p *Plan) Problems() []string {
	var out []string
	for _, d := range p.Dropped {
		out = append(out, d.String())
	}
	return out
}
