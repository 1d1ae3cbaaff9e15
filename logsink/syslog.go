package logsink

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Severity is a syslog severity (RFC 5424 section 6.2.1).
type Severity int

// The severities Python's SysLogHandler maps its log levels to.
const (
	SeverityError   Severity = 3
	SeverityWarning Severity = 4
	SeverityInfo    Severity = 6
	SeverityDebug   Severity = 7
)

// The facilities the original websockify logs under: user normally, daemon
// with --daemon.
const (
	FacilityUser   = 1
	FacilityDaemon = 3
)

// SyslogWriteTimeout bounds one send, so a stalled syslog daemon holds up
// the caller (and the sinks it writes after syslog) at most this long.
const SyslogWriteTimeout = time.Second

// The limits WebsockifySysLogHandler puts on the header's fields.
const (
	maxHostname = 255
	maxIdent    = 24 // safer for old daemons
)

// utf8BOM marks text that is not ASCII, as RFC 5424 asks for UTF-8 MSG.
const utf8BOM = "\xef\xbb\xbf"

// Syslog sends one message per log line to a syslog server, over UDP or a
// local unix socket, with the header the original websockify sends. It is
// safe for concurrent use; send errors are returned, never panicked on.
type Syslog struct {
	network string // "udp", or "" for a unix socket whose type is not yet known
	address string // host:port or an absolute socket path

	legacy   bool
	facility int
	hostname string // truncated, ASCII only
	ident    string // truncated, ASCII only
	pid      int
	now      func() time.Time // time.Now; tests fix it

	mu     sync.Mutex
	conn   net.Conn // nil when not connected
	closed bool
}

// DialSyslog connects to the syslog server dest: a UDP "host:port" if dest
// holds a colon (split at the last one), else a unix socket path, tried as
// a datagram socket and then as a stream socket, as Python's SysLogHandler
// does. legacy selects the RFC 3164-style header instead of RFC 5424's;
// ident (websockify) names the program in each message.
//
// A bad port, an unresolvable host or a unix socket nobody listens on is an
// error, so the command line can refuse to start with one line of reason.
func DialSyslog(dest string, legacy bool, facility int, ident string) (*Syslog, error) {
	s := &Syslog{
		legacy:   legacy,
		facility: facility,
		hostname: headerField(localHostname(), maxHostname),
		ident:    headerField(ident, maxIdent),
		pid:      os.Getpid(),
		now:      time.Now,
	}
	if i := strings.LastIndexByte(dest, ':'); i >= 0 {
		host, portText := dest[:i], dest[i+1:]
		port, err := strconv.Atoi(strings.TrimSpace(portText))
		if err != nil || port < 0 || port > 65535 {
			//lint:ignore ST1005 the message is the original websockify's
			return nil, errors.New("Error parsing syslog port")
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		addr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("syslog server %s: %w", dest, err)
		}
		s.network, s.address = "udp", addr.String()
	} else {
		if dest == "" {
			return nil, errors.New("syslog server: empty socket path")
		}
		path, err := filepath.Abs(dest) // the daemon's chdir must not lose it
		if err != nil {
			return nil, err
		}
		s.address = path
	}
	if err := s.connect(); err != nil {
		return nil, fmt.Errorf("syslog server %s: %w", dest, err)
	}
	return s, nil
}

func localHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "-" // RFC 5424's nil value
	}
	return h
}

// headerField cuts s to limit characters and drops what is not ASCII, as
// Python's slicing and encode('ascii', 'ignore') of the header do.
func headerField(s string, limit int) string {
	if utf8.RuneCountInString(s) > limit {
		s = string([]rune(s)[:limit])
	}
	return strings.Map(func(r rune) rune {
		if r >= utf8.RuneSelf {
			return -1
		}
		return r
	}, s)
}

// connect (re)opens the socket. For a unix socket whose type is not yet
// known it tries datagram, then stream, and keeps the type that worked.
func (s *Syslog) connect() error {
	s.closeConn()
	if s.network != "" {
		conn, err := net.DialTimeout(s.network, s.address, SyslogWriteTimeout)
		if err != nil {
			return err
		}
		s.conn = conn
		return nil
	}
	conn, err := net.DialTimeout("unixgram", s.address, SyslogWriteTimeout)
	if err == nil {
		s.network, s.conn = "unixgram", conn
		return nil
	}
	conn, streamErr := net.DialTimeout("unix", s.address, SyslogWriteTimeout)
	if streamErr != nil {
		return err // the datagram error says more about a usual /dev/log
	}
	s.network, s.conn = "unix", conn
	return nil
}

func (s *Syslog) closeConn() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}

// Send sends text as one message of the given severity. Newlines in text
// become spaces; empty text sends nothing. A socket whose send fails is
// reconnected and the message sent once more, as Python does for a unix
// socket (over UDP, the failure is an earlier datagram's ICMP error that
// Python's unconnected socket never sees). A send that takes longer than
// SyslogWriteTimeout fails with an error that matches
// os.ErrDeadlineExceeded, and is not retried.
func (s *Syslog) Send(severity Severity, text string) error {
	text = strings.ReplaceAll(text, "\n", " ")
	if text == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	if s.conn == nil {
		if err := s.connect(); err != nil {
			return err
		}
	}
	err := s.write(s.message(severity, text))
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// A stream that timed out may have sent part of a message: the
		// next one starts on a fresh connection.
		s.closeConn()
		return err
	}
	if err := s.connect(); err != nil {
		return err
	}
	return s.write(s.message(severity, text))
}

func (s *Syslog) write(msg []byte) error {
	if err := s.conn.SetWriteDeadline(time.Now().Add(SyslogWriteTimeout)); err != nil {
		return err
	}
	_, err := s.conn.Write(msg)
	return err
}

// message is one message as WebsockifySysLogHandler.emit builds it.
func (s *Syslog) message(severity Severity, text string) []byte {
	pri := s.facility*8 + int(severity)
	msg := make([]byte, 0, 80+len(s.hostname)+len(text))
	if s.legacy {
		msg = fmt.Appendf(msg, "<%d>%s[%d]: ", pri, s.ident, s.pid)
	} else {
		stamp := s.now().UTC().Format("2006-01-02T15:04:05Z")
		msg = fmt.Appendf(msg, "<%d>1 %s %s %s %d - - ", pri, stamp, s.hostname, s.ident, s.pid)
	}
	if !isASCII(text) {
		msg = append(msg, utf8BOM...)
	}
	msg = append(msg, text...)
	if s.network != "udp" && s.network != "unixgram" {
		msg = append(msg, '\n') // a stream's message delimiter
	}
	return msg
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// Close closes the socket; later sends fail with net.ErrClosed.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
