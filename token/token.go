// Package token owns the --token-plugin side of websockify: it resolves the
// token a client presents (the ?token= query or the token cookie) to the
// target the session connects to, as Python websockify's token plugins do.
//
// Each plugin is built once by New and then shared by every session, so
// Lookup is safe for concurrent use, honours its context's deadline, and
// keeps its own resources (files, HTTP connections, Redis pool) bounded.
// Lookup answers ErrNotFound when the token is unknown or rejected, and a
// *BackendError when the store behind the plugin failed, so the proxy can
// tell a refused client (403) from a broken backend (502/504).
package token

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Target is where a token leads.
type Target struct {
	Network string // "tcp" or "unix"
	Addr    string // net.JoinHostPort(host, port) for tcp; a socket path for unix
}

// ErrNotFound means the token is unknown or was rejected (a bad or expired
// JWT, an unparsable entry); the proxy answers 403.
var ErrNotFound = errors.New("token not found")

// BackendError means the store behind the plugin failed (Redis down, the
// token API erring or unreachable); the proxy answers 502, or 504 when
// Timeout reports true.
type BackendError struct {
	Backend string // e.g. "redis 127.0.0.1:6379", "token API http://..."
	Err     error
}

func (e *BackendError) Error() string { return e.Backend + ": " + e.Err.Error() }

func (e *BackendError) Unwrap() error { return e.Err }

// Timeout reports whether the backend ran out of time: the context's
// deadline passed or a network operation timed out.
func (e *BackendError) Timeout() bool {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var netErr net.Error
	return errors.As(e.Err, &netErr) && netErr.Timeout()
}

// Plugin resolves tokens to targets.
type Plugin interface {
	// Lookup resolves token. It is safe for concurrent use by many
	// goroutines and returns by ctx's deadline at the latest.
	Lookup(ctx context.Context, token string) (Target, error)
	// Name is the Python class's short name, e.g. "TokenFile".
	Name() string
	// Sockets is the most sockets Lookup can hold open at once, which the
	// proxy reserves in its descriptor budget; 0 if it opens none.
	Sockets() int
	// Close releases what the plugin holds (connection pools).
	Close() error
}

// Names lists the supported plugins by their short Python names.
var Names = []string{
	"ReadOnlyTokenFile",
	"TokenFile",
	"TokenFileName",
	"BaseTokenAPI",
	"JSONTokenApi",
	"JWTTokenApi",
	"TokenRedis",
	"UnixDomainSocketDirectory",
}

// pythonModule prefixes the long names Python websockify accepts.
const pythonModule = "websockify.token_plugins."

// New builds the plugin named by its short ("TokenFile") or long
// ("websockify.token_plugins.TokenFile") Python name, reading from source.
// log receives warnings and errors as one-line messages; nil discards them.
func New(name, source string, log func(msg string)) (Plugin, error) {
	if log == nil {
		log = func(string) {}
	}
	short := strings.TrimPrefix(name, pythonModule)
	known := false
	for _, n := range Names {
		if n == short {
			known = true
		}
	}
	if !known {
		return nil, fmt.Errorf("unsupported token plugin %q (supported: %s, optionally prefixed with %q)",
			name, strings.Join(Names, ", "), pythonModule)
	}
	if source == "" {
		return nil, fmt.Errorf("token plugin %s needs a --token-source", short)
	}
	switch short {
	case "ReadOnlyTokenFile":
		return newReadOnlyTokenFile(source, log)
	case "TokenFile":
		return newTokenFile(source, log)
	case "TokenFileName":
		return newTokenFileName(source, log)
	case "BaseTokenAPI":
		return newTokenAPI(short, source, parsePlainBody)
	case "JSONTokenApi":
		return newTokenAPI(short, source, parseJSONBody)
	case "JWTTokenApi":
		return newJWTTokenAPI(source, log)
	case "TokenRedis":
		return newTokenRedis(source, log)
	default: // UnixDomainSocketDirectory
		return newUnixDomainSocketDirectory(source, log)
	}
}

// SourceIsPath reports whether the plugin called name takes a file or
// directory as its source (the others take a URL or a Redis address), so
// that the command line can resolve a relative one before anything changes
// the working directory.
func SourceIsPath(name string) bool {
	switch strings.TrimPrefix(name, pythonModule) {
	case "ReadOnlyTokenFile", "TokenFile", "TokenFileName", "JWTTokenApi", "UnixDomainSocketDirectory":
		return true
	}
	return false
}

// unixSocketPrefix marks a target that is a unix socket path, as in
// Python's "unix_socket:/path" entries.
const unixSocketPrefix = "unix_socket:"

// ParseTarget parses a target as the token stores write it: "host:port",
// split at the last colon so that "::1:5900" and "[::1]:5900" both work, or
// "unix_socket:/path" for a unix socket. The port must be 1..65535.
func ParseTarget(s string) (Target, error) {
	if path, ok := strings.CutPrefix(s, unixSocketPrefix); ok {
		if path == "" {
			return Target{}, fmt.Errorf("target %q: empty unix socket path", s)
		}
		return Target{Network: "unix", Addr: path}, nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Target{}, fmt.Errorf("target %q: want host:port", s)
	}
	return hostPortTarget(s[:i], s[i+1:])
}

// hostPortTarget checks a host and port given apart (JSON bodies, JWT
// claims) and joins them.
func hostPortTarget(host, port string) (Target, error) {
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if host == "" {
		return Target{}, fmt.Errorf("target %q: empty host", host+":"+port)
	}
	if !plausibleHost(host) {
		return Target{}, fmt.Errorf("target host %q: not a host name or address", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
		return Target{}, fmt.Errorf("target %q: port %q is not a number in 1..65535", host+":"+port, port)
	}
	return Target{Network: "tcp", Addr: net.JoinHostPort(host, strconv.Itoa(n))}, nil
}

// plausibleHost reports whether host can be a host name or an IP address
// (with a zone): letters, digits, '.', '-', '_', and ':' and '%' for IPv6.
// A target that cannot be dialed is a bad entry, found when it is read.
func plausibleHost(host string) bool {
	for _, c := range host {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == '_' || c == ':' || c == '%':
		default:
			return false
		}
	}
	return true
}

// parseSourceArgs splits a --token-source at colons like Python's
// parse_source_args: a field that starts right at the beginning or after a
// colon may be wrapped in double quotes to hold colons, as long as the
// closing quote ends the field; any other quote is an ordinary character.
func parseSourceArgs(src string) []string {
	var fields []string
	start := 0
	for {
		rest := src[start:]
		if len(rest) > 2 && rest[0] == '"' {
			if q := strings.IndexByte(rest[1:], '"') + 1; q > 1 && (q+1 == len(rest) || rest[q+1] == ':') {
				fields = append(fields, rest[1:q])
				if q+1 == len(rest) {
					return fields
				}
				start += q + 2
				continue
			}
		}
		c := strings.IndexByte(rest, ':')
		if c < 0 {
			return append(fields, rest)
		}
		fields = append(fields, rest[:c])
		start += c + 1
	}
}
