package natsclient

import (
	"context"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func runServer(t *testing.T, js bool) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	if js {
		o.JetStream, o.StoreDir = true, t.TempDir()
		o.JetStreamMaxMemory, o.JetStreamMaxStore = 64<<20, 256<<20
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestURLs(t *testing.T) {
	got := URLs("tls://[fd00::1]:4222", "tls://[fd00::2]:4222", "", "tls://[fd00::1]:4222", "tls://[fd00::3]:4222")
	if want := "tls://[fd00::1]:4222,tls://[fd00::2]:4222,tls://[fd00::3]:4222"; got != want {
		t.Fatalf("URLs = %q, want %q", got, want)
	}
	if got := URLs("nats://a:4222"); got != "nats://a:4222" {
		t.Fatalf("URLs alone = %q", got)
	}
}

func TestOptions(t *testing.T) {
	o := nats.GetDefaultOptions()
	for _, opt := range Options() {
		if err := opt(&o); err != nil {
			t.Fatal(err)
		}
	}
	if o.PingInterval != 5*time.Second || o.MaxPingsOut != 2 || o.ReconnectWait != time.Second || o.MaxReconnect != -1 || !o.NoRandomize {
		t.Fatalf("options: ping %v ×%d, reconnect wait %v, max %d, no randomize %v", o.PingInterval, o.MaxPingsOut, o.ReconnectWait, o.MaxReconnect, o.NoRandomize)
	}
}

// Trap: nats.go shuffles the server list by default, so "local node
// first" in NATS_URL means nothing without DontRandomize.
func TestOptionsConnectLocalFirst(t *testing.T) {
	local, other := runServer(t, false), runServer(t, false)
	urls := URLs(local.ClientURL(), other.ClientURL())
	elsewhere := 0
	for range 20 {
		nc, err := nats.Connect(urls, Options()...)
		if err != nil {
			t.Fatal(err)
		}
		if nc.ConnectedUrl() != local.ClientURL() {
			t.Fatalf("connected to %s, not the local node first in %s", nc.ConnectedUrl(), urls)
		}
		nc.Close()
		nc, err = nats.Connect(urls)
		if err != nil {
			t.Fatal(err)
		}
		if nc.ConnectedUrl() != local.ClientURL() {
			elsewhere++
		}
		nc.Close()
	}
	if elsewhere == 0 {
		t.Fatal("nats.go without DontRandomize kept the order 20 times: the trap is gone")
	}
}

// freezer forwards TCP to a server until frozen; then it swallows the
// server's replies and keeps the connection open, as a server behind a
// dead WireGuard peer looks: no reset, no answer.
type freezer struct {
	ln     net.Listener
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	t.Cleanup(f.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, s)
			f.mu.Unlock()
			go io.Copy(s, c) // client → server keeps flowing
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if err != nil {
						return
					}
					if !f.frozen.Load() {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return f
}

func (f *freezer) url() string { return "nats://" + f.ln.Addr().String() }

func (f *freezer) close() {
	f.ln.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
}

// A JetStream publish through a server that stops answering (its acks
// lost, as behind a dead overlay peer) reconnects to the next server
// after two request timeouts and retries with the same Msg-Id: the
// message was stored by the first try, and the retry is told so.
func TestPublishReconnectsAfterTimeouts(t *testing.T) {
	s := runServer(t, true)
	f := newFreezer(t, s.ClientURL()[len("nats://"):])
	nc, err := nats.Connect(URLs(f.url(), s.ClientURL()), Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.ConnectedUrl() != f.url() {
		t.Fatalf("connected to %s first", nc.ConnectedUrl())
	}
	js, _ := jetstream.New(nc)
	ctx := t.Context()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "P", Subjects: []string{"p"}})
	if err != nil {
		t.Fatal(err)
	}
	f.frozen.Store(true)
	t0 := time.Now()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	ack, err := Publish(c, nc, js, "p", []byte("x"), "id-1")
	took := time.Since(t0)
	if err != nil {
		t.Fatalf("publish through a frozen server: %v", err)
	}
	if !ack.Duplicate || ack.Sequence != 1 {
		t.Fatalf("ack %+v: want the first try's message, reported as a duplicate", ack)
	}
	if nc.ConnectedUrl() != s.ClientURL() {
		t.Fatalf("still on %s", nc.ConnectedUrl())
	}
	if max := TimeoutsBeforeReconnect*RequestTimeout + 3*time.Second; took > max {
		t.Fatalf("publish took %v, want under %v", took, max)
	}
	t.Logf("frozen server left after %v", took.Round(time.Millisecond))
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream holds %+v (%v), want 1 message", info, err)
	}
	for i := range 3 {
		if _, err := Publish(ctx, nc, js, "p", []byte("y"), "id-"+strconv.Itoa(i+2)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPublishNeedsMsgID(t *testing.T) {
	s := runServer(t, true)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := Publish(t.Context(), nc, js, "p", nil, ""); err == nil {
		t.Fatal("publish without a Msg-Id accepted")
	}
}

// An idle client of a frozen server notices within PingInterval ×
// (MaxPingsOutstanding + 1) and moves to the next server; nats.go's
// defaults would take about 6 minutes.
func TestOptionsDetectFrozenServer(t *testing.T) {
	if testing.Short() {
		t.Skip("takes up to 15 s")
	}
	s := runServer(t, false)
	f := newFreezer(t, s.ClientURL()[len("nats://"):])
	moved := make(chan string, 1)
	opts := append(Options(), nats.ReconnectHandler(func(nc *nats.Conn) { moved <- nc.ConnectedUrl() }))
	nc, err := nats.Connect(URLs(f.url(), s.ClientURL()), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	f.frozen.Store(true)
	t0 := time.Now()
	limit := PingInterval*(MaxPingsOutstanding+1) + 2*time.Second
	select {
	case u := <-moved:
		if u != s.ClientURL() {
			t.Fatalf("reconnected to %s", u)
		}
		t.Logf("frozen server detected and left after %v", time.Since(t0).Round(time.Millisecond))
	case <-time.After(limit):
		t.Fatalf("no reconnect within %v", limit)
	}
}

// A failover answers a retry with an API error that a later try with the
// same Msg-Id gets past ("duplicate message id is in process" when the
// retry reaches the new leader while the first try is being stored there):
// Publish tries again. A refusal that no retry can help is returned.
func TestPublishRetriesFailoverErrors(t *testing.T) {
	s := runServer(t, false)
	nc, err := nats.Connect(s.ClientURL(), Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var ids []string
	answers := []string{
		`{"error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"}}`,
		`{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}`,
		`{"stream":"F","seq":7,"duplicate":true}`,
	}
	sub, err := nc.Subscribe("f", func(m *nats.Msg) {
		ids = append(ids, m.Header.Get(nats.MsgIdHdr))
		_ = m.Respond([]byte(answers[min(len(ids), len(answers))-1]))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	js, _ := jetstream.New(nc)
	ack, err := Publish(t.Context(), nc, js, "f", []byte("x"), "id-9")
	if err != nil {
		t.Fatalf("publish through a failover: %v", err)
	}
	if ack.Sequence != 7 || !ack.Duplicate || !slices.Equal(ids, []string{"id-9", "id-9", "id-9"}) {
		t.Fatalf("ack %+v after tries with Msg-Ids %v: want the third try's answer, every try with id-9", ack, ids)
	}

	answers = []string{`{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}`}
	ids = nil
	if _, err := Publish(t.Context(), nc, js, "f", []byte("x"), "id-10"); err == nil || len(ids) != 1 {
		t.Fatalf("a refusal no retry can help: err %v after %d tries, want an error after 1", err, len(ids))
	}
}
