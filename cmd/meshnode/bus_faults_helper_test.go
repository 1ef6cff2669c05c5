package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshnode/meshnode/natsnode/natsclient"
)

// The fault test's NATS client (TestJetStreamFaults) is this test binary
// re-executed inside a member's network namespace: nats.go's goroutines
// must all live in that namespace, which a setns on one locked thread
// cannot promise. TestMain runs faultsHelper instead of the tests when
// faultsModeEnv is set. It connects as a member's application would, from
// what `meshnode nats-env` printed (NATS_URL, NATS_NKEY, NATS_CA) and
// natsclient's recipe, and speaks to the test in lines on stdout.
const (
	faultsModeEnv    = "MESHNODE_FAULTS_MODE"    // "publish" or "read"
	faultsStreamEnv  = "MESHNODE_FAULTS_STREAM"  // the stream (read)
	faultsSubjectEnv = "MESHNODE_FAULTS_SUBJECT" // the subject published to
	faultsPrefixEnv  = "MESHNODE_FAULTS_PREFIX"  // Msg-Id prefix: <prefix>-<seq>
)

// faultsRate is the publisher's pace: modest, so that the five daemons
// on a 2-core machine are not saturated by the client itself, and fast
// enough that a stall of a second shows as a gap.
const faultsRate = 50 // messages per second

// faultsHelper is the helper process's main; it returns the exit code.
func faultsHelper(mode string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	out := &lineWriter{w: bufio.NewWriter(os.Stdout)}
	var err error
	switch mode {
	case "publish":
		err = faultsPublish(ctx, out)
	case "read":
		err = faultsRead(ctx, out)
	default:
		err = fmt.Errorf("unknown %s %q", faultsModeEnv, mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults helper:", err)
		return 1
	}
	return 0
}

// lineWriter writes whole lines to stdout, flushed at once: the nats.go
// callbacks write from their own goroutines.
type lineWriter struct {
	mu sync.Mutex // guards w
	w  *bufio.Writer
}

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
	l.w.Flush()
}

// faultsConnect connects with the member's credentials and natsclient's
// options, and opens JetStream on the connection; the handlers only report
// (conn/disc lines), they change nothing.
func faultsConnect(ctx context.Context, out *lineWriter) (*nats.Conn, jetstream.JetStream, error) {
	url := os.Getenv("NATS_URL")
	nk, err := nats.NkeyOptionFromSeed(os.Getenv("NATS_NKEY"))
	if err != nil {
		return nil, nil, err
	}
	opts := append([]nats.Option{nk, nats.RootCAs(os.Getenv("NATS_CA")), nats.Name("faults-" + os.Getenv(faultsModeEnv))},
		natsclient.Options()...)
	opts = append(opts,
		nats.ConnectHandler(func(nc *nats.Conn) { out.printf("conn %d %s", time.Now().UnixNano(), nc.ConnectedUrl()) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { out.printf("conn %d %s", time.Now().UnixNano(), nc.ConnectedUrl()) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			out.printf("disc %d %s", time.Now().UnixNano(), oneLine(err))
		}),
	)
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			js, err := jetstream.New(nc)
			if err != nil {
				nc.Close()
				return nil, nil, err
			}
			return nc, js, nil
		}
		out.printf("connfail %d %s", time.Now().UnixNano(), oneLine(err))
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("connect %s: %w", url, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func oneLine(err error) string {
	if err == nil {
		return "(no error: a reconnect natsclient.Publish forced)"
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// faultsPublish publishes <prefix>-1, <prefix>-2, … with natsclient.Publish
// at faultsRate (slower when acks come slower) until the signal, one line
// per ack: "ack SEQ UNIXNANO STREAMSEQ DUP". The publish in flight when
// the signal comes is not acked and not reported.
func faultsPublish(ctx context.Context, out *lineWriter) error {
	nc, js, err := faultsConnect(ctx, out)
	if err != nil {
		return err
	}
	defer nc.Close()
	subject, prefix := os.Getenv(faultsSubjectEnv), os.Getenv(faultsPrefixEnv)
	period := time.Second / faultsRate
	next := time.Now()
	for seq := 1; ; seq++ {
		id := prefix + "-" + strconv.Itoa(seq)
		for {
			ack, err := natsclient.Publish(ctx, nc, js, subject, []byte(id), id)
			if ctx.Err() != nil {
				out.printf("stopped %d", seq-1)
				return nil
			}
			if err == nil {
				dup := 0
				if ack.Duplicate {
					dup = 1
				}
				out.printf("ack %d %d %d %d", seq, time.Now().UnixNano(), ack.Sequence, dup)
				break
			}
			// The recipe gives up on a refusal (an API error) or a closed
			// connection; an application would report it and try again
			// with the same Msg-Id, and the test counts it.
			out.printf("refused %d %d %s", seq, time.Now().UnixNano(), oneLine(err))
			select {
			case <-ctx.Done():
				out.printf("stopped %d", seq-1)
				return nil
			case <-time.After(100 * time.Millisecond):
			}
		}
		next = next.Add(period)
		if lag := time.Until(next); lag > 0 {
			select {
			case <-ctx.Done():
				out.printf("stopped %d", seq)
				return nil
			case <-time.After(lag):
			}
		} else if lag < -time.Second {
			next = time.Now() // after a stall, go on at the pace, no burst
		}
	}
}

// faultsRead reads the whole stream with a fresh ordered consumer, in
// stream order, one line per message: "msg STREAMSEQ MSGID"; then
// "end COUNT FIRSTSEQ LASTSEQ".
func faultsRead(ctx context.Context, out *lineWriter) error {
	nc, js, err := faultsConnect(ctx, out)
	if err != nil {
		return err
	}
	defer nc.Close()
	name := os.Getenv(faultsStreamEnv)
	var info *jetstream.StreamInfo
	for {
		// Retried: right after a restart the stream may still elect a leader.
		s, err := js.Stream(ctx, name)
		if err == nil {
			if info, err = s.Info(ctx); err == nil {
				break
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	last := info.State.LastSeq
	cons, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return err
	}
	// Messages, not Fetch: an ordered consumer's Fetch recreates the
	// consumer every call, and a pull right after a create can find no
	// responder yet; Messages keeps one consumer and recreates it itself
	// when heartbeats stop.
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	count, seen := 0, uint64(0)
	for seen < last {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("read stopped after stream sequence %d of %d: %w", seen, last, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		seen = meta.Sequence.Stream
		count++
		out.printf("msg %d %s", seen, m.Headers().Get(jetstream.MsgIDHeader))
	}
	out.printf("end %d %d %d", count, info.State.FirstSeq, last)
	return nil
}
