package eventloop

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Logger writes log lines in the original websockify's shapes: per-client
// lines as "<ip> - - [27/Nov/2026 12:00:00] message", the rest plain.
// It is safe for concurrent use.
//
// Lines are buffered and written out at most flushDelay after the first of
// them, and by Flush: a session logs about five lines as it starts, and a
// write syscall for each cost more than a tenth of the proxy's set-up rate.
type Logger struct {
	mu          sync.Mutex
	w           *bufio.Writer
	verbose     bool
	flushTimer  *time.Timer // armed when a line is buffered, so an idle proxy never wakes to flush
	flushArmed  bool
	lastRefusal atomic.Int64 // unix nanos of the last open-file refusal line
	lastDate    atomic.Pointer[stampedDate]
}

// flushDelay is the longest a line waits in the buffer.
const flushDelay = 100 * time.Millisecond

// NewLogger logs to w; verbose enables debug lines.
func NewLogger(w io.Writer, verbose bool) *Logger {
	l := &Logger{w: bufio.NewWriterSize(w, 32<<10), verbose: verbose}
	l.flushTimer = time.AfterFunc(time.Hour, func() {
		l.mu.Lock()
		l.flushArmed = false
		_ = l.w.Flush()
		l.mu.Unlock()
	})
	l.flushTimer.Stop()
	return l
}

func (l *Logger) line(s string) {
	l.mu.Lock()
	// Each write(2) carries whole lines, so workers sharing one log file
	// (--workers) never split each other's lines.
	if l.w.Available() < len(s) && l.w.Buffered() > 0 {
		_ = l.w.Flush()
	}
	_, _ = l.w.WriteString(s)
	if !l.flushArmed {
		l.flushArmed = true
		l.flushTimer.Reset(flushDelay)
	}
	l.mu.Unlock()
}

// Flush writes out the buffered lines.
func (l *Logger) Flush() {
	l.mu.Lock()
	_ = l.w.Flush()
	l.mu.Unlock()
}

// Infof logs a plain line.
func (l *Logger) Infof(format string, args ...any) { l.line(fmt.Sprintf(format, args...) + "\n") }

// Errorf logs a plain line; errors are not told apart from information in
// the original's output either.
func (l *Logger) Errorf(format string, args ...any) { l.Infof(format, args...) }

// Debugf logs only with -v.
func (l *Logger) Debugf(format string, args ...any) {
	if l.verbose {
		l.Infof(format, args...)
	}
}

// Connf logs a line about one client.
func (l *Logger) Connf(addr, format string, args ...any) {
	l.line(addr + " - - [" + l.date() + "] " + fmt.Sprintf(format, args...) + "\n")
}

// stampedDate is the log's date text for one second.
type stampedDate struct {
	unix int64
	text string
}

// date returns the current second as the original's log formats it,
// formatted once a second rather than once a line.
func (l *Logger) date() string {
	now := time.Now()
	if d := l.lastDate.Load(); d != nil && d.unix == now.Unix() {
		return d.text
	}
	d := &stampedDate{unix: now.Unix(), text: now.Format("02/Jan/2006 15:04:05")}
	l.lastDate.Store(d)
	return d.text
}

// ConnDebugf is Connf only with -v.
func (l *Logger) ConnDebugf(addr, format string, args ...any) {
	if l.verbose {
		l.Connf(addr, format, args...)
	}
}

// refusal logs msg at most once a second, so a flood of refused clients
// does not flood the log.
func (l *Logger) refusal(msg string) {
	now := time.Now().UnixNano()
	last := l.lastRefusal.Load()
	if now-last < int64(time.Second) || !l.lastRefusal.CompareAndSwap(last, now) {
		return
	}
	l.Infof("%s", msg)
}

// gnetLogger routes gnet's own error lines into ours.
type gnetLogger struct{ l *Logger }

func (g gnetLogger) Debugf(string, ...any)     {}
func (g gnetLogger) Infof(string, ...any)      {}
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Debugf("gnet: "+f, a...) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Errorf("gnet: "+f, a...) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Errorf("gnet: "+f, a...) }

// hostOf is the address part of a client's address, as the original logs it.
func hostOf(a net.Addr) string {
	if a == nil {
		return "unknown"
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	if s := a.String(); s != "" {
		return s
	}
	return "unix"
}
