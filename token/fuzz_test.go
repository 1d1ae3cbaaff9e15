package token

import (
	"net"
	"strings"
	"testing"
)

// The parsers of what users and backends write (token file lines, targets,
// Redis sources and values, API bodies, JWT key files) must never panic, and
// a target they accept must be one the proxy can dial.
func FuzzParsers(f *testing.F) {
	for _, s := range []string{
		"vm1: 127.0.0.1:5900", "tok:\t::1:5900", "x: [::1]:1", "u: unix_socket:/run/vnc.sock",
		"h:6379:0:\"pa:ss\":\"ns:x\"", `{"host": "a:1"}`, `{"host": "a", "port": 5900}`,
		"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n", "c2VjcmV0", ": :", "a: b: c:d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkTarget(t, "ParseTarget", s, func() (Target, error) { return ParseTarget(s) })
		checkTarget(t, "parseRedisValue", s, func() (Target, error) { return parseRedisValue(s) })
		checkTarget(t, "parsePlainBody", s, func() (Target, error) { return parsePlainBody([]byte(s)) })
		checkTarget(t, "parseJSONBody", s, func() (Target, error) { return parseJSONBody([]byte(s)) })
		if _, target, err := parseTokenLine(s); err == nil {
			checkTarget(t, "parseTokenLine", s, func() (Target, error) { return target, nil })
		}
		_, _ = parseRedisSource(s)
		if fields := parseSourceArgs(s); !strings.Contains(s, `"`) && len(fields) != strings.Count(s, ":")+1 {
			t.Errorf("parseSourceArgs(%q) = %q: want the plain split at colons", s, fields)
		}
		_, _ = parseJWTKey([]byte(s))
	})
}

func checkTarget(t *testing.T, name, in string, parse func() (Target, error)) {
	t.Helper()
	target, err := parse()
	if err != nil {
		return
	}
	switch target.Network {
	case "tcp":
		host, port, err := net.SplitHostPort(target.Addr)
		if err != nil || host == "" && port == "" {
			t.Errorf("%s(%q) = %+v: not host:port (%v)", name, in, target, err)
		}
	case "unix":
		if target.Addr == "" {
			t.Errorf("%s(%q) = %+v: empty socket path", name, in, target)
		}
	default:
		t.Errorf("%s(%q) = %+v: network %q", name, in, target, target.Network)
	}
}
