package eventloop

// --log-format json: the same lines as the text format, each turned into
// one JSON object by the logger's writer goroutine, so an event loop pays
// for a JSON line only what it pays for a text one (plus reading the
// clock). A line becomes
//
//	{"time":"2026-11-27T12:00:00.123Z","level":"info","client":"192.0.2.1","msg":"...", ...}
//
// time is when the line was logged (UTC, milliseconds), level one of
// debug, info, warning and error, client the address a per-client text line
// starts with (absent on other lines), msg the rest of the text line, word
// for word. Lines that carry values in a fixed shape get them as fields of
// their own too (jsonFields): an HTTP request line its method, path,
// protocol and status; a dial its target; a close line its close_code;
// the SIGUSR1 status line its counters.

import (
	"bytes"
	"time"
	"unicode/utf8"

	"github.com/gowebsockify/websockify/logsink"
)

// LogFormat is how lines are written: FormatText (the original's shapes)
// or FormatJSON (one object per line).
type LogFormat int

const (
	FormatText LogFormat = iota
	FormatJSON
)

// ParseLogFormat reads --log-format.
func ParseLogFormat(s string) (LogFormat, bool) {
	switch s {
	case "text":
		return FormatText, true
	case "json":
		return FormatJSON, true
	}
	return FormatText, false
}

// jsonTimeLayout is RFC 3339 with milliseconds, always in UTC ("Z").
const jsonTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// jsonLines turns a batch of text lines into JSON lines in the writer's own
// buffers (only the writer goroutine calls it), and returns them with their
// ends.
func (l *Logger) jsonLines(batch []byte, ends []lineEnd) ([]byte, []lineEnd) {
	out, outEnds := l.jsonBuf[:0], l.jsonEnds[:0]
	start := 0
	for _, e := range ends {
		line := batch[start : e.end-1] // without its "\n"
		start = e.end
		at := e.at
		if at == 0 { // a line the writer added (dropped lines)
			at = time.Now().UnixNano()
		}
		out = appendJSONLine(out, line, e, at)
		outEnds = append(outEnds, lineEnd{end: len(out), severity: e.severity})
	}
	if cap(out) <= keptSpareSize {
		l.jsonBuf, l.jsonEnds = out, outEnds
	} else {
		l.jsonBuf, l.jsonEnds = nil, nil
	}
	return out, outEnds
}

// appendJSONLine appends one text line as a JSON object and "\n".
func appendJSONLine(dst, line []byte, e lineEnd, at int64) []byte {
	dst = append(dst, `{"time":"`...)
	dst = time.Unix(0, at).UTC().AppendFormat(dst, jsonTimeLayout)
	dst = append(dst, `","level":"`...)
	dst = append(dst, levelName(e.severity)...)
	dst = append(dst, '"')
	if e.clientLen > 0 && int(e.clientLen) <= len(line) {
		dst = append(dst, `,"client":`...)
		dst = appendJSONString(dst, line[:e.clientLen])
	}
	msg := line
	if int(e.msgStart) <= len(line) {
		msg = line[e.msgStart:]
	}
	dst = append(dst, `,"msg":`...)
	dst = appendJSONString(dst, msg)
	dst = appendJSONFields(dst, msg)
	return append(dst, "}\n"...)
}

func levelName(s logsink.Severity) string {
	switch s {
	case logsink.SeverityDebug:
		return "debug"
	case logsink.SeverityWarning:
		return "warning"
	case logsink.SeverityError:
		return "error"
	}
	return "info"
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028
// and U+2029 escaped as encoding/json does (JavaScript readers choke on
// them raw).
func appendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONFields appends the values msg carries in one of the fixed
// shapes the proxy logs them in, as fields of their own.
func appendJSONFields(dst, msg []byte) []byte {
	// `"GET /path HTTP/1.1" 101 -`: the original's request line.
	if method, path, proto, status, ok := requestLine(msg); ok {
		dst = append(dst, `,"method":`...)
		dst = appendJSONString(dst, method)
		dst = append(dst, `,"path":`...)
		dst = appendJSONString(dst, path)
		dst = append(dst, `,"protocol":`...)
		dst = appendJSONString(dst, proto)
		dst = append(dst, `,"status":`...)
		return append(dst, status...)
	}
	// "ADDR: code 403, message Forbidden": an HTTP error's detail line.
	if n, ok := numberAfter(msg, ": code "); ok {
		dst = append(dst, `,"status":`...)
		return append(dst, n...)
	}
	// "ADDR: Closing connection: 1000 Target closed" and
	// "ADDR: Client closed connection (code 1000)".
	if n, ok := numberAfter(msg, ": Closing connection: "); ok {
		dst = append(dst, `,"close_code":`...)
		return append(dst, n...)
	}
	if n, ok := numberAfter(msg, ": Client closed connection (code "); ok {
		dst = append(dst, `,"close_code":`...)
		return append(dst, n...)
	}
	// "connecting to: HOST:PORT" and "connecting to unix socket: PATH",
	// " (using SSL)" after either with --ssl-target.
	for _, prefix := range []string{"connecting to: ", "connecting to unix socket: "} {
		if rest, ok := bytes.CutPrefix(msg, []byte(prefix)); ok {
			rest = bytes.TrimSuffix(rest, []byte(" (using SSL)"))
			dst = append(dst, `,"target":`...)
			return appendJSONString(dst, rest)
		}
	}
	// "status: sessions=3 goroutines=20 fds=31 pid=1234" (SIGUSR1).
	if rest, ok := bytes.CutPrefix(msg, []byte("status: ")); ok {
		for len(rest) > 0 {
			field := rest
			if sp := bytes.IndexByte(rest, ' '); sp >= 0 {
				field, rest = rest[:sp], rest[sp+1:]
			} else {
				rest = nil
			}
			eq := bytes.IndexByte(field, '=')
			if eq <= 0 || !isName(field[:eq]) || !isDigits(field[eq+1:]) {
				continue
			}
			dst = append(dst, ',')
			dst = appendJSONString(dst, field[:eq])
			dst = append(dst, ':')
			dst = append(dst, field[eq+1:]...)
		}
	}
	return dst
}

// requestLine splits `"METHOD TARGET PROTO" STATUS -`.
func requestLine(msg []byte) (method, path, proto, status []byte, ok bool) {
	if len(msg) < 2 || msg[0] != '"' || !bytes.HasSuffix(msg, []byte(" -")) {
		return
	}
	body := msg[1 : len(msg)-2]
	q := bytes.LastIndex(body, []byte(`" `))
	if q < 0 {
		return
	}
	inside, status := body[:q], body[q+2:]
	if !isDigits(status) || len(status) != 3 {
		return
	}
	sp1, sp2 := bytes.IndexByte(inside, ' '), bytes.LastIndexByte(inside, ' ')
	if sp1 <= 0 || sp2 <= sp1 {
		return
	}
	return inside[:sp1], inside[sp1+1 : sp2], inside[sp2+1:], status, true
}

// numberAfter finds sep in msg and returns the decimal number right after
// it.
func numberAfter(msg []byte, sep string) ([]byte, bool) {
	i := bytes.Index(msg, []byte(sep))
	if i < 0 {
		return nil, false
	}
	rest := msg[i+len(sep):]
	n := 0
	for n < len(rest) && n < 10 && '0' <= rest[n] && rest[n] <= '9' {
		n++
	}
	if n == 0 || (rest[0] == '0' && n > 1) {
		return nil, false
	}
	return rest[:n], true
}

// isDigits reports a JSON-valid unsigned integer (no leading zeros).
func isDigits(b []byte) bool {
	if len(b) == 0 || len(b) > 19 || (b[0] == '0' && len(b) > 1) {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isName(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || c == '_') {
			return false
		}
	}
	return len(b) > 0
}
