package codec

import (
	"bytes"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// ServerName is what the Server header of our own responses says.
const ServerName = "WebSockify Go"

// hixieChallengeLen is the size of the Hixie-76 key3 that follows the head.
const hixieChallengeLen = 8

// Request is a parsed HTTP request head.
type Request struct {
	Method string      // "GET"
	Target string      // request-target as sent: path and query, e.g. "/websockify?token=a"
	Proto  string      // "HTTP/1.1"
	Header http.Header // canonical keys
	Body   []byte      // the Hixie-76 8-byte challenge, when the request carries Key1/Key2
	// RemoteAddr is the client's address (an IP, or what stands for a
	// unix socket's peer), the real one behind a trusted proxy: set by
	// the Session before any auth plugin sees the request.
	RemoteAddr string
}

// IsWebSocket reports whether req asks for a WebSocket upgrade: a GET whose
// Upgrade header is "websocket" in any case.
func (r *Request) IsWebSocket() bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// isHixie76 reports whether the request is an upgrade with the two Hixie-76
// keys, and so has an 8-byte challenge after its head.
func (r *Request) isHixie76() bool {
	return r.IsWebSocket() && len(r.Header["Sec-Websocket-Key1"]) > 0 && len(r.Header["Sec-Websocket-Key2"]) > 0
}

// ParseRequest parses one request head (plus the Hixie-76 challenge body)
// from the start of buf. n == 0 with err == nil means more bytes are needed.
// Errors are *HTTPError: 431 past max bytes, 400 for anything malformed,
// 505 for an HTTP major version above 1.
//
// Empty lines before the request line are skipped, as RFC 9112 allows. The
// returned Request shares no memory with buf.
func ParseRequest(buf []byte, max int) (req *Request, n int, err error) {
	start, end, err := findHead(buf, max)
	if err != nil || end == 0 {
		return nil, 0, err
	}
	req, err = parseHead(buf[start:end])
	if err != nil {
		return nil, 0, err
	}
	n = end
	if req.isHixie76() {
		if len(buf) < end+hixieChallengeLen {
			return nil, 0, nil
		}
		n += hixieChallengeLen
		req.Body = bytes.Clone(buf[end:n])
	}
	return req, n, nil
}

// findHead locates the request head in buf: from start (past any leading
// empty lines) to end (past the empty line closing it). end == 0 means the
// head is not complete yet. It only checks the request line, so that garbage
// is refused early without waiting for a blank line that may never come;
// header lines are checked by parseHead once the head is complete. Past the
// request line it does no more than a byte search per line, because a slow
// client may make us run it once per byte received.
func findHead(buf []byte, max int) (start, end int, err error) {
	lim := min(len(buf), max)
	if lim < 0 {
		lim = 0
	}
	pos := 0
	first := true
	for {
		i := bytes.IndexByte(buf[pos:lim], '\n')
		if i < 0 {
			break
		}
		line := trimCR(buf[pos : pos+i])
		next := pos + i + 1
		switch {
		case len(line) == 0 && first:
			start = next // an empty line before the request line
		case len(line) == 0:
			return start, next, nil
		case first:
			if _, _, _, err := parseRequestLine(line); err != nil {
				return 0, 0, err
			}
			first = false
		}
		pos = next
	}
	if first && !plausibleRequestLine(buf[pos:lim]) {
		return 0, 0, badRequest("Bad request syntax")
	}
	if len(buf) >= max {
		return 0, 0, &HTTPError{Status: http.StatusRequestHeaderFieldsTooLarge, Reason: "Request header too large"}
	}
	return 0, 0, nil
}

// plausibleRequestLine reports whether the beginning of an unfinished request
// line can still become a valid one.
func plausibleRequestLine(p []byte) bool {
	p = bytes.TrimSuffix(p, []byte{'\r'})
	method := true
	for _, c := range p {
		switch {
		case c == ' ' || c == '\t':
			method = false
		case isCTL(c):
			return false
		case method && !isTokenChar(c):
			return false
		}
	}
	return true
}

// parseHead builds the Request from a complete head, request line first,
// ending with its empty line.
func parseHead(head []byte) (*Request, error) {
	lines := bytes.Count(head, []byte{'\n'})
	// One copy of the whole head: every string of the Request is a substring
	// of it, so the request costs a few allocations, not one per field.
	s := string(head)
	vals := make([]string, 0, lines)
	req := &Request{Header: make(http.Header, lines)}

	nl := strings.IndexByte(s, '\n')
	var err error
	req.Method, req.Target, req.Proto, err = parseRequestLine(strings.TrimSuffix(s[:nl], "\r"))
	if err != nil {
		return nil, err
	}
	s = s[nl+1:]

	var lastKey string
	for {
		nl = strings.IndexByte(s, '\n')
		line := strings.TrimSuffix(s[:nl], "\r")
		s = s[nl+1:]
		if line == "" {
			return req, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			// Obsolete line folding continues the previous value.
			vs := req.Header[lastKey]
			if lastKey == "" || !validFieldValue(line) {
				return nil, badRequest("Bad header continuation line")
			}
			last := &vs[len(vs)-1]
			*last = strings.TrimLeft(*last+" "+trimOWS(line), " ")
			continue
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return nil, badRequest("Bad header line")
		}
		value := trimOWS(line[colon+1:])
		if !validFieldValue(value) {
			return nil, badRequest("Bad header value")
		}
		key := textproto.CanonicalMIMEHeaderKey(line[:colon])
		if vs, ok := req.Header[key]; ok {
			req.Header[key] = append(vs, value)
		} else {
			// Slicing one backing array with a capacity limit: a repeated
			// key appends into a new array instead of its neighbour's slot.
			vals = append(vals, value)
			req.Header[key] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
		lastKey = key
	}
}

// parseRequestLine splits "METHOD target HTTP/x.y". Like Python's
// http.server it splits on runs of blanks. It works on the caller's bytes or
// string alike so that findHead can check a line without copying it.
func parseRequestLine[T ~string | ~[]byte](line T) (method, target, proto T, err error) {
	// Control characters anywhere make it garbage, whichever word holds
	// them: the verdict on a line seen whole is then the one
	// plausibleRequestLine gives while it is still arriving.
	if !validFieldValue(line) {
		return method, target, proto, badRequest("Bad request syntax")
	}
	var words [3]T
	nw := 0
	for i := 0; i < len(line); {
		if line[i] == ' ' || line[i] == '\t' {
			i++
			continue
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		if nw == len(words) {
			return method, target, proto, badRequest("Bad request syntax")
		}
		words[nw] = line[i:j]
		nw++
		i = j
	}
	if nw != 3 || !isToken(words[0]) || !validFieldValue(words[1]) {
		return method, target, proto, badRequest("Bad request syntax")
	}
	major, ok := parseHTTPVersion(words[2])
	if !ok {
		return method, target, proto, badRequest("Bad request version")
	}
	if major != 1 {
		return method, target, proto, &HTTPError{Status: http.StatusHTTPVersionNotSupported, Reason: "Invalid HTTP version"}
	}
	return words[0], words[1], words[2], nil
}

// parseHTTPVersion reads "HTTP/<digits>.<digits>" and returns the major part.
func parseHTTPVersion[T ~string | ~[]byte](p T) (major int, ok bool) {
	const prefix = "HTTP/"
	if len(p) < len(prefix) || string(p[:len(prefix)]) != prefix {
		return 0, false
	}
	p = p[len(prefix):]
	dot := -1
	for i := 0; i < len(p); i++ {
		if p[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 0 || !allDigits(p[:dot]) || !allDigits(p[dot+1:]) || dot > 3 || len(p)-dot-1 > 3 {
		return 0, false
	}
	for i := 0; i < dot; i++ {
		major = major*10 + int(p[i]-'0')
	}
	return major, true
}

func allDigits[T ~string | ~[]byte](p T) bool {
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return len(p) > 0
}

func trimCR(p []byte) []byte { return bytes.TrimSuffix(p, []byte{'\r'}) }

// trimOWS trims the optional white space around a header value.
func trimOWS(s string) string { return strings.Trim(s, " \t") }

func isCTL(c byte) bool { return c < 0x20 && c != '\t' || c == 0x7f }

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110 5.6.2).
func isTokenChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune("\"(),/:;<=>?@[\\]{}", rune(c))
}

func isToken[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return len(s) > 0
}

// validFieldValue refuses control characters; anything else goes, as with
// Python, which reads header bytes as Latin-1.
func validFieldValue[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if isCTL(s[i]) {
			return false
		}
	}
	return true
}

// HTTPError is a refusal to send before closing the connection.
type HTTPError struct {
	Status int    // 400, 403, 404, 405, 431...
	Reason string // short, human readable; also the body
	Header string // extra header lines, each ending in "\r\n"
}

func (e *HTTPError) Error() string { return e.Reason }

func badRequest(reason string) *HTTPError {
	return &HTTPError{Status: http.StatusBadRequest, Reason: reason}
}

// Response renders e as a complete HTTP/1.1 response with "Connection: close".
// The body is the reason (or the status text when there is none) and a newline.
func (e *HTTPError) Response() []byte {
	reason := e.Reason
	if reason == "" {
		reason = StatusText(e.Status)
	}
	body := reason + "\n"
	var b bytes.Buffer
	b.Grow(160 + len(e.Header) + len(body))
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(e.Status))
	b.WriteByte(' ')
	b.WriteString(StatusText(e.Status))
	b.WriteString("\r\nServer: " + ServerName + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteString("\r\nConnection: close\r\n")
	b.WriteString(e.Header)
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

// StatusText is the reason phrase for an HTTP status code, never empty.
func StatusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "Status " + strconv.Itoa(code)
}
