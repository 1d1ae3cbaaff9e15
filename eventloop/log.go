package eventloop

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowebsockify/websockify/logsink"
)

// Logger writes log lines in the original websockify's shapes: per-client
// lines as "<ip> - - [27/Nov/2026 12:00:00] message", the rest plain. Every
// line goes to the primary writer (stderr) and to the log file and syslog
// when they are configured, as the original's handlers do. It is safe for
// concurrent use.
//
// Logging never blocks an event loop: a line is only appended to a pending
// buffer under a mutex. A writer goroutine writes the pending lines out
// flushDelay after the first of them, at once when writeOutSize is pending,
// and on Flush. A session logs about five lines as it starts, and a write
// syscall for each cost more than a tenth of the proxy's set-up rate.
type Logger struct {
	verbose     bool
	lastRefusal atomic.Int64 // unix nanos of the last open-file refusal line
	lastDate    atomic.Pointer[stampedDate]

	mu          sync.Mutex
	pending     []byte    // whole lines waiting for the writer
	pendingEnds []lineEnd // where each line in pending ends, and its severity
	spare       []byte    // the writer's last batch, reused as the next pending buffer
	spareEnds   []lineEnd
	dropped     int    // lines refused since the last report, pending being full
	logged      uint64 // bytes ever put in pending
	written     uint64 // bytes of those the writer has finished with
	writtenCond *sync.Cond
	writing     bool // a writer goroutine is running
	flushers    int  // Flush calls waiting
	timerArmed  bool
	flushTimer  *time.Timer // armed when a line is pending, so an idle proxy never wakes

	// --log-format json (logjson.go), and the writer's JSON batch buffers.
	json     bool
	jsonBuf  []byte
	jsonEnds []lineEnd

	// The sinks; nil file and syslog when not configured or closed.
	primary io.Writer
	file    *logsink.File
	syslog  *logsink.Syslog
}

// lineEnd marks the end of one logged line (its "\n" included) in a batch.
// For --log-format json it also says when the line was logged (unix
// nanoseconds) and where its client address and message are in the line.
type lineEnd struct {
	end       int
	severity  logsink.Severity
	at        int64
	clientLen int32 // the line starts with a client address this long
	msgStart  int32 // the message starts here (after "ADDR - - [DATE] ")
}

const (
	// flushDelay is the longest a line waits in the buffer.
	flushDelay = 100 * time.Millisecond
	// writeOutSize pending bytes start the writer without waiting.
	writeOutSize = 32 << 10
	// maxPending bounds the buffer when the sinks cannot keep up; lines
	// beyond it are dropped and counted.
	maxPending = 4 << 20
	// maxWriteSize bounds one write to the primary writer or the file, so a
	// pipe (its default capacity) takes each whole.
	maxWriteSize = 64 << 10
	// keptSpareSize: a batch buffer larger than this, left by a burst, goes
	// back to the garbage collector rather than being kept.
	keptSpareSize = 256 << 10
)

// LogConfig is the full set of log destinations, from the command line.
type LogConfig struct {
	Verbose      bool      // -v: debug lines too
	Stderr       io.Writer // the primary writer; nil means os.Stderr
	File         string    // --log-file, appended to; "" for none
	Syslog       string    // --syslog: a unix socket path or a UDP host:port; "" for none
	LegacySyslog bool      // --legacy-syslog: RFC 3164-style headers
	Daemon       bool      // --daemon: syslog facility daemon instead of user
	Format       LogFormat // --log-format: text (the original's) or json
}

// NewLogger logs to w only; verbose enables debug lines.
func NewLogger(w io.Writer, verbose bool) *Logger {
	l := &Logger{primary: w, verbose: verbose}
	l.writtenCond = sync.NewCond(&l.mu)
	l.flushTimer = time.AfterFunc(time.Hour, l.flushDue)
	l.flushTimer.Stop()
	return l
}

// OpenLogger opens every destination cfg names. Its errors (a log file that
// cannot be opened, a bad syslog server) are one line, fit to exit with.
func OpenLogger(cfg LogConfig) (*Logger, error) {
	primary := cfg.Stderr
	if primary == nil {
		primary = os.Stderr
	}
	l := NewLogger(primary, cfg.Verbose)
	l.json = cfg.Format == FormatJSON
	if cfg.File != "" {
		f, err := logsink.OpenFile(cfg.File)
		if err != nil {
			return nil, fmt.Errorf("log file: %w", err)
		}
		l.file = f
	}
	if cfg.Syslog != "" {
		facility := logsink.FacilityUser
		if cfg.Daemon {
			facility = logsink.FacilityDaemon
		}
		s, err := logsink.DialSyslog(cfg.Syslog, cfg.LegacySyslog, facility, "websockify")
		if err != nil {
			if l.file != nil {
				_ = l.file.Close()
			}
			return nil, err
		}
		l.syslog = s
	}
	return l, nil
}

// Reopen reopens the log file at its path, after logrotate (SIGHUP).
func (l *Logger) Reopen() error {
	l.mu.Lock()
	file := l.file
	l.mu.Unlock()
	if file == nil {
		return nil
	}
	return file.Reopen()
}

// Close flushes (waiting, like Flush, on a stalled primary writer), then
// closes the log file and syslog; later lines go to the primary writer only.
func (l *Logger) Close() error {
	l.Flush()
	l.mu.Lock()
	file, syslog := l.file, l.syslog
	l.file, l.syslog = nil, nil
	l.mu.Unlock()
	var errs []error
	if file != nil {
		errs = append(errs, file.Close())
	}
	if syslog != nil {
		errs = append(errs, syslog.Close())
	}
	return errors.Join(errs...)
}

// Infof logs a plain line.
func (l *Logger) Infof(format string, args ...any) {
	l.logf(logsink.SeverityInfo, format, args)
}

// Warnf logs a plain line at warning level (only syslog tells levels apart,
// as the original's "%(message)s" output does not show them).
func (l *Logger) Warnf(format string, args ...any) {
	l.logf(logsink.SeverityWarning, format, args)
}

// Errorf logs a plain line at error level.
func (l *Logger) Errorf(format string, args ...any) {
	l.logf(logsink.SeverityError, format, args)
}

// Debugf logs only with -v.
func (l *Logger) Debugf(format string, args ...any) {
	if l.verbose {
		l.logf(logsink.SeverityDebug, format, args)
	}
}

// Connf logs a line about one client.
func (l *Logger) Connf(addr, format string, args ...any) {
	l.connf(logsink.SeverityInfo, addr, format, args)
}

// ConnDebugf is Connf only with -v.
func (l *Logger) ConnDebugf(addr, format string, args ...any) {
	if l.verbose {
		l.connf(logsink.SeverityDebug, addr, format, args)
	}
}

// lineBufs holds the buffers lines are formatted into, so logging a line
// allocates nothing in the steady state.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func (l *Logger) logf(severity logsink.Severity, format string, args []any) {
	bp := lineBufs.Get().(*[]byte)
	line := fmt.Appendf((*bp)[:0], format, args...)
	l.put(severity, append(line, '\n'), 0, 0)
	recycle(bp, line)
}

func (l *Logger) connf(severity logsink.Severity, addr, format string, args []any) {
	bp := lineBufs.Get().(*[]byte)
	line := append((*bp)[:0], addr...)
	line = append(line, " - - ["...)
	line = append(line, l.date()...)
	line = append(line, "] "...)
	msgStart := len(line)
	line = fmt.Appendf(line, format, args...)
	l.put(severity, append(line, '\n'), len(addr), msgStart)
	recycle(bp, line)
}

func recycle(bp *[]byte, line []byte) {
	if cap(line) <= 64<<10 {
		*bp = line
		lineBufs.Put(bp)
	}
}

// put appends one line to pending, or drops it if pending is full. A
// client's line says where its address and message are, for JSON.
func (l *Logger) put(severity logsink.Severity, line []byte, clientLen, msgStart int) {
	var at int64
	if l.json {
		at = time.Now().UnixNano()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending)+len(line) > maxPending {
		l.dropped++
		if !l.writing && !l.timerArmed { // a line too long on its own: report it
			l.timerArmed = true
			l.flushTimer.Reset(flushDelay)
		}
		return
	}
	l.pending = append(l.pending, line...)
	l.pendingEnds = append(l.pendingEnds, lineEnd{end: len(l.pending), severity: severity, at: at, clientLen: int32(clientLen), msgStart: int32(msgStart)})
	l.logged += uint64(len(line))
	switch {
	case l.writing: // it looks at pending again when it is done
	case len(l.pending) >= writeOutSize:
		l.startWriter()
	case !l.timerArmed:
		l.timerArmed = true
		l.flushTimer.Reset(flushDelay)
	}
}

// Flush returns once the lines logged before it are written out, so Flush
// then exit loses nothing.
func (l *Logger) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	target := l.logged
	l.flushers++
	for l.written < target {
		if !l.writing {
			l.startWriter()
		}
		l.writtenCond.Wait()
	}
	l.flushers--
}

// flushDue runs when a line has waited flushDelay.
func (l *Logger) flushDue() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timerArmed = false
	if !l.writing && (len(l.pending) > 0 || l.dropped > 0) {
		l.startWriter()
	}
}

// startWriter starts the writer goroutine; l.mu is held. There is at most
// one, and only while there is something to write.
func (l *Logger) startWriter() {
	l.writing = true
	if l.timerArmed {
		l.flushTimer.Stop()
		l.timerArmed = false
	}
	go l.writeOut()
}

// writeOut takes the pending lines as a batch and writes them to every
// sink, again while more is pending than is worth waiting for or a Flush
// waits.
func (l *Logger) writeOut() {
	l.mu.Lock()
	for len(l.pending) > 0 || l.dropped > 0 {
		batch, ends := l.pending, l.pendingEnds
		l.pending, l.pendingEnds = l.spare[:0], l.spareEnds[:0]
		// The previous batch is written out, so drops so far have ended:
		// say so after the lines logged before them.
		if l.dropped > 0 {
			report := fmt.Appendf(nil, "websockify: %d log lines dropped: log output too slow\n", l.dropped)
			batch = append(batch, report...)
			ends = append(ends, lineEnd{end: len(batch), severity: logsink.SeverityWarning})
			l.logged += uint64(len(report))
			l.dropped = 0
		}
		batchEnd := l.logged
		primary, file, syslog := l.primary, l.file, l.syslog
		l.mu.Unlock()

		out, outEnds := batch, ends
		if l.json {
			out, outEnds = l.jsonLines(batch, ends)
		}
		writeLines(primary, out, outEnds)
		if file != nil {
			writeLines(file, out, outEnds)
		}
		if syslog != nil {
			sendLines(syslog, out, outEnds)
		}

		l.mu.Lock()
		l.written = batchEnd
		l.writtenCond.Broadcast()
		if cap(batch) <= keptSpareSize {
			l.spare, l.spareEnds = batch, ends
		} else {
			l.spare, l.spareEnds = nil, nil
		}
		if len(l.pending) < writeOutSize && l.flushers == 0 {
			break
		}
	}
	l.writing = false
	if (len(l.pending) > 0 || l.dropped > 0) && !l.timerArmed {
		l.timerArmed = true
		l.flushTimer.Reset(flushDelay)
	}
	l.mu.Unlock()
}

// writeLines writes batch to w in writes of whole lines, at most
// maxWriteSize each unless one line is longer: processes sharing a log file
// with O_APPEND never split each other's lines. Errors are dropped; there
// is nowhere to report them.
func writeLines(w io.Writer, batch []byte, ends []lineEnd) {
	start, cut := 0, 0
	for _, e := range ends {
		if e.end-start > maxWriteSize && cut > start {
			_, _ = w.Write(batch[start:cut])
			start = cut
		}
		cut = e.end
	}
	if cut > start {
		_, _ = w.Write(batch[start:cut])
	}
}

// sendLines sends each line of batch as one syslog message. After a send
// times out the rest of the batch is dropped, so a stalled syslog daemon
// holds up the other sinks at most logsink.SyslogWriteTimeout per batch.
func sendLines(s *logsink.Syslog, batch []byte, ends []lineEnd) {
	start := 0
	for _, e := range ends {
		text := string(batch[start : e.end-1]) // without its "\n"
		start = e.end
		if err := s.Send(e.severity, text); errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
	}
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

// refusal logs msg at most once a second, so a flood of refused clients
// does not flood the log.
func (l *Logger) refusal(msg string) {
	now := time.Now().UnixNano()
	last := l.lastRefusal.Load()
	if now-last < int64(time.Second) || !l.lastRefusal.CompareAndSwap(last, now) {
		return
	}
	l.Warnf("%s", msg)
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
