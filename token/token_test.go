package token

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    Target
		wantErr bool
	}{
		{in: "example.com:5900", want: Target{"tcp", "example.com:5900"}},
		{in: "127.0.0.1:1", want: Target{"tcp", "127.0.0.1:1"}},
		{in: "::1:5900", want: Target{"tcp", "[::1]:5900"}},
		{in: "[::1]:5900", want: Target{"tcp", "[::1]:5900"}},
		{in: "fe80::1:65535", want: Target{"tcp", "[fe80::1]:65535"}},
		{in: "unix_socket:/run/vnc.sock", want: Target{"unix", "/run/vnc.sock"}},
		{in: "unix_socket:/path:with:colons", want: Target{"unix", "/path:with:colons"}},
		{in: "unix_socket:", wantErr: true},
		{in: "host", wantErr: true},
		{in: "host:", wantErr: true},
		{in: ":5900", wantErr: true},
		{in: "[]:5900", wantErr: true},
		{in: "host:0", wantErr: true},
		{in: "host:65536", wantErr: true},
		{in: "host:+5900", wantErr: true},
		{in: "host:59a0", wantErr: true},
		{in: "host:remote_port", wantErr: true},
		{in: "ho st:5900", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// The cases of Python's ParseSourceArgumentsTestCase.
func TestParseSourceArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{``, []string{``}},
		{`:`, []string{``, ``}},
		{`::`, []string{``, ``, ``}},
		{`"`, []string{`"`}},
		{`""`, []string{`""`}},
		{`"""`, []string{`"""`}},
		{`"localhost"`, []string{`localhost`}},
		{`"localhost":`, []string{`localhost`, ``}},
		{`"localhost"::`, []string{`localhost`, ``, ``}},
		{`"local:host"`, []string{`local:host`}},
		{`"local:host:"pass"`, []string{`"local`, `host`, `pass`}},
		{`"local":"host"`, []string{`local`, `host`}},
		{`"local":host"`, []string{`local`, `host"`}},
		{`localhost:6379:1:pass"word:"my-app-namespace:dev"`, []string{`localhost`, `6379`, `1`, `pass"word`, `my-app-namespace:dev`}},
		{`a:"b"c:d`, []string{`a`, `"b"c`, `d`}},
	}
	for _, tt := range tests {
		if got := parseSourceArgs(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseSourceArgs(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseRedisSource(t *testing.T) {
	tests := []struct {
		in      string
		want    redisSource
		wantErr string
	}{
		{in: "127.0.0.1", want: redisSource{host: "127.0.0.1", port: 6379}},
		{in: "127.0.0.1:1234", want: redisSource{host: "127.0.0.1", port: 1234}},
		{in: "127.0.0.1:1234:2", want: redisSource{host: "127.0.0.1", port: 1234, db: 2}},
		{in: "127.0.0.1:1234:2:verysecret", want: redisSource{host: "127.0.0.1", port: 1234, db: 2, password: "verysecret"}},
		{in: "127.0.0.1:1234:2:verysecret:ns", want: redisSource{host: "127.0.0.1", port: 1234, db: 2, password: "verysecret", namespace: "ns"}},
		{in: "my-redis-host:::verysecretpass", want: redisSource{host: "my-redis-host", port: 6379, password: "verysecretpass"}},
		{in: "my-redis-host::::my-app-namespace", want: redisSource{host: "my-redis-host", port: 6379, namespace: "my-app-namespace"}},
		{in: `my-redis-host::::"first-ns:second-ns"`, want: redisSource{host: "my-redis-host", port: 6379, namespace: "first-ns:second-ns"}},
		{in: `"::1":6380:3:"pa:ss"`, want: redisSource{host: "::1", port: 6380, db: 3, password: "pa:ss"}},
		{in: "h::", want: redisSource{host: "h", port: 6379}},
		{in: "h:1:2:3:4:5", wantErr: "more than 5 fields"},
		{in: "h:port", wantErr: "port"},
		{in: "h:70000", wantErr: "port"},
		{in: "h:1:db", wantErr: "db"},
		{in: "h:1:-1", wantErr: "db"},
		{in: ":6379", wantErr: "no host"},
	}
	for _, tt := range tests {
		got, err := parseRedisSource(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseRedisSource(%q) error = %v; want one saying %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseRedisSource(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	if got := (redisSource{namespace: "a:b"}).key("tok"); got != "a:b:tok" {
		t.Errorf("key with namespace = %q", got)
	}
	if got := (redisSource{}).key("tok"); got != "tok" {
		t.Errorf("key without namespace = %q", got)
	}
}

func TestNewNames(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	if err := os.WriteFile(file, []byte("a: h:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"TokenFile", "websockify.token_plugins.TokenFile"} {
		p, err := New(name, file, nil)
		if err != nil {
			t.Fatalf("New(%q): %v", name, err)
		}
		if p.Name() != "TokenFile" {
			t.Errorf("New(%q).Name() = %q", name, p.Name())
		}
		p.Close()
	}
	_, err := New("NoSuchPlugin", file, nil)
	if err == nil {
		t.Fatal("New(NoSuchPlugin) succeeded")
	}
	for _, name := range Names {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("unknown-name error %q does not list %s", err, name)
		}
	}
	if _, err := New("websockify.token_plugins.Nope", file, nil); err == nil {
		t.Error("New with an unknown long name succeeded")
	}
	for _, name := range Names {
		if _, err := New(name, "", nil); err == nil {
			t.Errorf("New(%q) with no source succeeded", name)
		}
	}
}

func TestBackendErrorTimeout(t *testing.T) {
	if !(&BackendError{Backend: "x", Err: context.DeadlineExceeded}).Timeout() {
		t.Error("DeadlineExceeded is not a timeout")
	}
	if (&BackendError{Backend: "x", Err: errors.New("refused")}).Timeout() {
		t.Error("a plain error is a timeout")
	}
	err := error(&BackendError{Backend: "redis h:1", Err: errors.New("refused")})
	if err.Error() != "redis h:1: refused" {
		t.Errorf("Error() = %q", err.Error())
	}
}

// logRecorder collects what a plugin logs.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) log(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msg)
}

func (r *logRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func (r *logRecorder) contains(parts ...string) bool {
	for _, msg := range r.all() {
		found := true
		for _, part := range parts {
			found = found && strings.Contains(msg, part)
		}
		if found {
			return true
		}
	}
	return false
}

// testContext bounds a lookup in a test.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func wantTarget(t *testing.T, p Plugin, token string, want Target) {
	t.Helper()
	got, err := p.Lookup(testContext(t, 5*time.Second), token)
	if err != nil || got != want {
		t.Errorf("%s.Lookup(%q) = %+v, %v; want %+v", p.Name(), token, got, err, want)
	}
}

func wantNotFound(t *testing.T, p Plugin, token string) {
	t.Helper()
	got, err := p.Lookup(testContext(t, 5*time.Second), token)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("%s.Lookup(%q) = %+v, %v; want ErrNotFound", p.Name(), token, got, err)
	}
}

func tcp(addr string) Target { return Target{Network: "tcp", Addr: addr} }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSourceIsPath(t *testing.T) {
	for name, want := range map[string]bool{
		"TokenFile": true, "websockify.token_plugins.JWTTokenApi": true, "UnixDomainSocketDirectory": true,
		"TokenRedis": false, "BaseTokenAPI": false, "websockify.token_plugins.JSONTokenApi": false,
	} {
		if got := SourceIsPath(name); got != want {
			t.Errorf("SourceIsPath(%q) = %v, want %v", name, got, want)
		}
	}
}
