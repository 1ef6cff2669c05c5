package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/mesh"
)

const natsUsage = `usage: meshnode nats [--state DIR] [--timeout D] [--server URL] COMMAND ...
  pub SUBJECT DATA                 publish one message
  sub SUBJECT [COUNT]              print COUNT messages (default 1), one per line
  stream-add NAME SUBJECT REPLICAS create a JetStream stream (file storage)
  stream-info NAME                 print stream state and replicas as JSON
  js-pub SUBJECT DATA [COUNT]      publish COUNT messages with acks (ids DATA-0…: a rerun is deduplicated)`

// runNATS is a small NATS client that connects to this node's embedded
// server exactly as nats-env describes (TLS pinned to the mesh CA, the
// node's nkey): for quick checks, the demo and the end-to-end tests.
func runNATS(ctx context.Context, args []string) error {
	fs := newFlagSet("nats", "COMMAND ...")
	fs.Usage = func() { fmt.Fprintln(os.Stderr, natsUsage) }
	state := stateFlag(fs)
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	serverURL := fs.String("server", "", "connect to this member's NATS server (tls://[overlay-addr]:4222) instead of this node's own, still as this node")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("missing command")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	nc, err := connectLocal(ctx, identity.StateDir(*state), *serverURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	a := fs.Args()
	need := func(n int) error {
		if len(a) < n+1 {
			return fmt.Errorf("nats %s: want %d arguments\n%s", a[0], n, natsUsage)
		}
		return nil
	}
	count := func(i int) (int, error) {
		if len(a) <= i {
			return 1, nil
		}
		return strconv.Atoi(a[i])
	}
	switch a[0] {
	case "pub":
		if err := need(2); err != nil {
			return err
		}
		if err := nc.Publish(a[1], []byte(a[2])); err != nil {
			return err
		}
		return nc.FlushWithContext(ctx)
	case "sub":
		if err := need(1); err != nil {
			return err
		}
		n, err := count(2)
		if err != nil {
			return fmt.Errorf("COUNT: %w", err)
		}
		sub, err := nc.SubscribeSync(a[1])
		if err != nil {
			return err
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			return err
		}
		// Tell a waiting caller the subscription is in place.
		fmt.Fprintln(os.Stderr, "subscribed", a[1])
		for i := 0; i < n; i++ {
			m, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return fmt.Errorf("after %d of %d messages: %w", i, n, err)
			}
			fmt.Println(string(m.Data))
		}
		return nil
	case "stream-add":
		if err := need(3); err != nil {
			return err
		}
		r, err := strconv.Atoi(a[3])
		if err != nil {
			return fmt.Errorf("REPLICAS: %w", err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: a[1], Subjects: []string{a[2]}, Replicas: r, Storage: jetstream.FileStorage})
		return err
	case "stream-info":
		if err := need(1); err != nil {
			return err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		s, err := js.Stream(ctx, a[1])
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(info)
	case "js-pub":
		if err := need(2); err != nil {
			return err
		}
		n, err := count(3)
		if err != nil {
			return fmt.Errorf("COUNT: %w", err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		// Message i carries the id DATA-i, so running the same js-pub
		// again after a timeout (a leader election, say) is deduplicated by
		// JetStream instead of storing messages twice.
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s-%d", a[2], i)
			if _, err := js.Publish(ctx, a[1], []byte(a[2]), jetstream.WithMsgID(id)); err != nil {
				return fmt.Errorf("message %d: %w", i, err)
			}
		}
		return nil
	default:
		return fmt.Errorf("unknown nats command %q\n%s", a[0], natsUsage)
	}
}

// connectLocal connects to the node's embedded server (or to url, when
// set) over TLS with the node's own nkey. Losing the connection and
// failing to get it back are reported on stderr as they happen, so that a
// long-running sub says why it stopped (a revoked identity is closed and
// then refused).
func connectLocal(ctx context.Context, dir identity.StateDir, url string) (*nats.Conn, error) {
	m, err := dir.LoadMember(time.Now())
	if err != nil {
		return nil, err
	}
	cfg, err := mesh.LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	nk, err := nats.NkeyOptionFromSeed(dir.NKeyPath())
	if err != nil {
		return nil, fmt.Errorf("nkey %s: %w", dir.NKeyPath(), err)
	}
	if url == "" {
		url = "tls://" + net.JoinHostPort(m.Ticket.Addr.String(), strconv.Itoa(cfg.NATSClientPort))
	}
	opts := []nats.Option{
		nk, nats.Secure(identity.ClientTLS(m.Trust, nil)), nats.Name("meshnode-cli"),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			fmt.Fprintf(os.Stderr, "nats: disconnected from %s: %v\n", url, err)
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			fmt.Fprintf(os.Stderr, "nats: reconnect to %s failed: %v\n", url, err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			fmt.Fprintf(os.Stderr, "nats: %v\n", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				fmt.Fprintf(os.Stderr, "nats: connection to %s closed: %v\n", url, err)
			}
		}),
	}
	deadline, _ := ctx.Deadline()
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			return nc, nil
		}
		// The server may still be starting (JetStream bootstrap waits for
		// members): retry until the deadline.
		if time.Now().Add(200 * time.Millisecond).After(deadline) {
			return nil, fmt.Errorf("connect %s: %w", url, err)
		}
		if strings.Contains(err.Error(), "Authorization") {
			return nil, fmt.Errorf("connect %s: %w", url, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect %s: %w", url, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
