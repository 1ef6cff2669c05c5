package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
	"github.com/meshnode/meshnode/mesh/api"
	"github.com/meshnode/meshnode/natsnode/natsclient"
)

func runNATSEnv(ctx context.Context, args []string) error {
	fs := newFlagSet("nats-env", "")
	state := stateFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	r, err := loadRecipe(ctx, identity.StateDir(*state))
	if err != nil {
		return err
	}
	r.print(os.Stdout)
	return nil
}

// recipe is how a client connects to this node's NATS: what nats-env
// prints and what `meshnode nats` does, from one place.
type recipe struct {
	URLs     string // NATS_URL: this node first, then every live member (core members on a leaf)
	NKeyPath string
	CAPath   string
	dir      identity.StateDir
	trust    *identity.Trust
}

// loadRecipe reads the node's state and asks the running daemon for the
// live members; without a daemon NATS_URL lists this node alone.
func loadRecipe(ctx context.Context, dir identity.StateDir) (*recipe, error) {
	m, err := dir.LoadMember(time.Now())
	if err != nil {
		return nil, err
	}
	cfg, err := mesh.LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	local := natsURL(m.Ticket.Addr.String(), cfg.NATSClientPort)
	var members []api.MemberStatus
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := api.NewClient(dir).Status(c)
	switch {
	case err == nil:
		members = natsEnvMembers(st)
	case errors.Is(err, api.ErrNotRunning):
	default:
		fmt.Fprintln(os.Stderr, "meshnode: listing this node only in NATS_URL: members unknown:", err)
	}
	return &recipe{
		URLs:     natsclient.URLs(local, memberURLs(members)...),
		NKeyPath: dir.NKeyPath(),
		CAPath:   dir.CACertPath(),
		dir:      dir,
		trust:    m.Trust,
	}, nil
}

func natsURL(host string, port int) string {
	return "tls://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// natsEnvMembers are the members whose servers a client of this node
// falls back to: every member on a core member; on a leaf only the core
// members, whose servers hold the routes and JetStream (another leaf's
// server would depend on a core member too).
func natsEnvMembers(st *api.Status) []api.MemberStatus {
	if st.NATS.Role != api.NATSRoleLeaf {
		return st.Members
	}
	var out []api.MemberStatus
	for _, m := range st.Members {
		if m.Roles.Has(identity.RoleCore) {
			out = append(out, m)
		}
	}
	return out
}

// memberURLs are the client URLs of the live members, in the order given.
func memberURLs(members []api.MemberStatus) []string {
	var out []string
	for _, m := range members {
		if m.State == api.StateAlive && m.Addr.IsValid() && m.NATSClientPort != 0 {
			out = append(out, natsURL(m.Addr.String(), int(m.NATSClientPort)))
		}
	}
	return out
}

// options are the connection options: the node's nkey, TLS pinned to the
// mesh CA, and natsclient's recommended settings.
func (r *recipe) options(name string) ([]nats.Option, error) {
	nk, err := nats.NkeyOptionFromSeed(r.NKeyPath)
	if err != nil {
		return nil, fmt.Errorf("nkey %s: %w", r.NKeyPath, err)
	}
	opts := []nats.Option{nk, nats.Secure(identity.ClientTLS(r.trust, nil)), nats.Name(name)}
	return append(opts, natsclient.Options()...), nil
}

func (r *recipe) print(w io.Writer) {
	fmt.Fprintf(w, "export NATS_URL=%s\n", r.URLs)
	fmt.Fprintf(w, "export NATS_NKEY=%s\n", r.NKeyPath)
	fmt.Fprintf(w, "export NATS_CA=%s\n", r.CAPath)
	fmt.Fprintf(w, `# Client settings (see README "Connecting a NATS client"): keep NATS_URL's order
# (nats.go: DontRandomize), ping every %v with at most %d outstanding (a dead
# member sends no TCP reset; nats.go's defaults notice after ~6 min), reconnect
# forever every %v, and retry JetStream publishes with the same Msg-Id,
# reconnecting after %d request timeouts in a row.
`, natsclient.PingInterval, natsclient.MaxPingsOutstanding, natsclient.ReconnectWait, natsclient.TimeoutsBeforeReconnect)
}
