package mesh

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// metricsHandler serves the node's metrics in the Prometheus text format.
// The text is rendered into a buffer first so a slow scraper never holds
// the node's locks.
func metricsHandler(b interface{ WriteMetrics(io.Writer) }) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		b.WriteMetrics(&buf)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write(buf.Bytes())
	})
}

// serveMetrics listens on addr (--metrics-addr) and serves GET /metrics
// and nothing else. It is plain HTTP: bind it to loopback or the overlay
// address (where WireGuard already authenticates every peer), not to an
// underlay address strangers reach.
func serveMetrics(addr string, b interface{ WriteMetrics(io.Writer) }, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener --metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler(b))
	srv := &http.Server{
		Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
		MaxHeaderBytes: 8 << 10,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	log.Info("metrics listener", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
