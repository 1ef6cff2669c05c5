package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshnode/meshnode/identity"
	"github.com/meshnode/meshnode/natsnode/natsclient"
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
			if _, err := natsclient.Publish(ctx, nc, js, a[1], []byte(a[2]), id); err != nil {
				return fmt.Errorf("message %d: %w", i, err)
			}
		}
		return nil
	default:
		return fmt.Errorf("unknown nats command %q\n%s", a[0], natsUsage)
	}
}

// connectLocal connects as nats-env describes (loadRecipe): NATS_URL with
// this node first, TLS pinned to the mesh CA, the node's nkey, and
// natsclient's settings; url, when set (--server), replaces NATS_URL.
// Losing the connection and failing to get it back are reported on stderr
// as they happen, so that a long-running sub says why it stopped (a revoked
// identity is closed and then refused).
func connectLocal(ctx context.Context, dir identity.StateDir, url string) (*nats.Conn, error) {
	r, err := loadRecipe(ctx, dir)
	if err != nil {
		return nil, err
	}
	opts, err := r.options("meshnode-cli")
	if err != nil {
		return nil, err
	}
	if url != "" {
		r.URLs = url
	}
	opts = append(opts,
		// nats.go calls this on Close too, with no error: only a lost
		// connection is worth a line (stdout stays the command's output).
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				fmt.Fprintf(os.Stderr, "nats: disconnected from %s: %v\n", r.URLs, err)
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			fmt.Fprintf(os.Stderr, "nats: reconnect failed: %v\n", err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			fmt.Fprintf(os.Stderr, "nats: %v\n", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				fmt.Fprintf(os.Stderr, "nats: connection closed: %v\n", err)
			}
		}),
	)
	deadline, _ := ctx.Deadline()
	for {
		nc, err := nats.Connect(r.URLs, opts...)
		if err == nil {
			return nc, nil
		}
		// The server may be starting, or restarting once into its
		// cluster (see natsnode): retry until the deadline.
		if time.Now().Add(200 * time.Millisecond).After(deadline) {
			return nil, fmt.Errorf("connect %s: %w", r.URLs, err)
		}
		if strings.Contains(err.Error(), "Authorization") {
			return nil, fmt.Errorf("connect %s: %w", r.URLs, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect %s: %w", r.URLs, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
