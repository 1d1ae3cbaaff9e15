package codec

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// TokenFrom says where a session's token is read from (--token-plugin).
type TokenFrom uint8

const (
	NoToken        TokenFrom = iota // one fixed target for every session
	TokenFromQuery                  // the "token" query parameter
	TokenFromHost                   // the Host header without its port (--host-token)
)

// TokenOf finds the token of an upgrade request: the first "token" query
// parameter (or, with TokenFromHost, the Host header's name), else a
// "token" cookie. An empty token is no token.
func TokenOf(req *Request, from TokenFrom) (string, bool) {
	if from == NoToken {
		return "", false
	}
	var token string
	switch from {
	case TokenFromHost:
		token = hostName(req.Header.Get("Host"))
	case TokenFromQuery:
		if i := strings.IndexByte(req.Target, '?'); i >= 0 {
			// A malformed pair elsewhere in the query does not hide the token.
			q, _ := url.ParseQuery(req.Target[i+1:])
			if v := q["token"]; len(v) > 0 {
				token = strings.TrimRight(v[0], "\n") // as the original
			}
		}
	}
	if token == "" {
		for _, c := range (&http.Request{Header: req.Header}).CookiesNamed("token") {
			if c.Value != "" {
				token = c.Value
				break
			}
		}
	}
	return token, token != ""
}

// hostName strips the port from a Host header: "vm1:6080" and "[::1]:6080"
// give "vm1" and "::1".
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}

// Authenticator checks requests before they are served (--auth-plugin).
type Authenticator interface {
	// Authenticate returns nil to let req through, or the response that
	// refuses it (401 or 403, with its headers) and the reason to log.
	// clientCN is the CN of the client's verified certificate, "" for
	// none. It runs on an event loop, so it must not block.
	Authenticate(req *Request, clientCN string) (refusal *HTTPError, why string)
}

// printable makes text from a client safe for one log line: control
// characters and invalid UTF-8 are escaped, so a token cannot forge lines.
func printable(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}
