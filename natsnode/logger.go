package natsnode

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
)

// serverLogger adapts nats-server's Logger to slog. Fatalf never exits: it
// records the first fatal message so Start turns it into an error (and
// Status reports it). The route secret is redacted from every line, because
// nats-server prints route URLs (which carry it) in some messages.
type serverLogger struct {
	log    *slog.Logger
	redact []string
	mu     sync.Mutex
	fatal  string
}

func newServerLogger(l *slog.Logger, secret string) *serverLogger {
	// l already names the component; src tells nats-server's own lines
	// from natsnode's, as wireguard-go's carry src=wireguard.
	sl := &serverLogger{log: l.With("src", "nats-server")}
	if secret != "" {
		sl.redact = []string{secret, url.PathEscape(secret), url.QueryEscape(secret), url.UserPassword(RouteUser, secret).String()}
	}
	return sl
}

func (l *serverLogger) msg(format string, v []any) string {
	m := fmt.Sprintf(format, v...)
	for _, s := range l.redact {
		if s != "" {
			m = strings.ReplaceAll(m, s, "[REDACTED]")
		}
	}
	return m
}

func (l *serverLogger) Noticef(format string, v ...any) {
	l.log.Info(l.msg(format, v))
}

func (l *serverLogger) Warnf(format string, v ...any) {
	l.log.Warn(l.msg(format, v))
}

func (l *serverLogger) Errorf(format string, v ...any) {
	l.log.Error(l.msg(format, v))
}

func (l *serverLogger) Fatalf(format string, v ...any) {
	m := l.msg(format, v)
	l.log.Error(m, "fatal", true)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fatal == "" {
		l.fatal = m
	}
}

func (l *serverLogger) Debugf(format string, v ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(l.msg(format, v))
	}
}

func (l *serverLogger) Tracef(format string, v ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug-4) {
		l.log.Log(context.Background(), slog.LevelDebug-4, l.msg(format, v))
	}
}

func (l *serverLogger) fatalMsg() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}
