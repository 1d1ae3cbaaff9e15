package token

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server the test started on a free port.
type redisServer struct {
	port int
	cmd  *exec.Cmd
}

func startRedis(t *testing.T, extraArgs ...string) *redisServer {
	t.Helper()
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		binary = "/usr/bin/redis-server"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, extraArgs...)
	cmd := exec.Command(binary, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", binary, err)
	}
	server := &redisServer{port: port, cmd: cmd}
	t.Cleanup(server.stop)
	// Wait until it answers PING (+PONG, or -NOAUTH when it wants a password).
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", server.addr(), time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(time.Second))
			fmt.Fprint(conn, "PING\r\n")
			line, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
				return server
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s does not answer", server.addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *redisServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *redisServer) stop() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// set stores key=value in db through a client of the test's own.
func (s *redisServer) set(t *testing.T, db int, password, key, value string) {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: s.addr(), DB: db, Password: password, PoolSize: 1, Protocol: 2})
	defer client.Close()
	if err := client.Set(testContext(t, 5*time.Second), key, value, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func newRedis(t *testing.T, source string, logs *logRecorder) Plugin {
	t.Helper()
	p, err := New("TokenRedis", source, logs.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestTokenRedisValues(t *testing.T) {
	server := startRedis(t)
	values := map[string]string{
		"plain":        "remote_host:5900",
		"plain-spaced": " remote_host:5900 \n",
		"json":         `{"host": "remote_host:5900"}`,
		"json-spaced":  ` {"host": "remote_host:5900"} `,
		"v6":           "::1:5901",
		"unix":         "unix_socket:/run/vnc.sock",
		"bad-json":     `{"host": "remote_host:5900"   `,
		"json-no-host": `{"target": "remote_host:5900"}`,
		"no-port":      "remote_host",
	}
	for key, value := range values {
		server.set(t, 0, "", key, value)
	}
	logs := &logRecorder{}
	p := newRedis(t, server.addr(), logs)
	if p.Sockets() != redisConns+redisBatchers {
		t.Errorf("Sockets() = %d, want %d", p.Sockets(), redisConns+redisBatchers)
	}
	for _, token := range []string{"plain", "plain-spaced", "json", "json-spaced"} {
		wantTarget(t, p, token, tcp("remote_host:5900"))
	}
	wantTarget(t, p, "v6", tcp("[::1]:5901"))
	wantTarget(t, p, "unix", Target{Network: "unix", Addr: "/run/vnc.sock"})
	wantNotFound(t, p, "missing")
	for _, token := range []string{"bad-json", "json-no-host", "no-port"} {
		wantNotFound(t, p, token)
		if !logs.contains("TokenRedis", `"`+token+`"`) {
			t.Errorf("the unparsable value of %s is not logged: %q", token, logs.all())
		}
	}
}

func TestTokenRedisSourceFields(t *testing.T) {
	server := startRedis(t)
	server.set(t, 0, "", "tok", "db0:1")
	server.set(t, 3, "", "tok", "db3:1")
	server.set(t, 0, "", "ns:tok", "namespaced:1")
	server.set(t, 0, "", "first-ns:second-ns:tok", "nested:1")
	port := strconv.Itoa(server.port)

	wantTarget(t, newRedis(t, "127.0.0.1:"+port, &logRecorder{}), "tok", tcp("db0:1"))
	wantTarget(t, newRedis(t, "127.0.0.1:"+port+":3", &logRecorder{}), "tok", tcp("db3:1"))
	wantTarget(t, newRedis(t, "127.0.0.1:"+port+":::ns", &logRecorder{}), "tok", tcp("namespaced:1"))
	wantTarget(t, newRedis(t, `"127.0.0.1":`+port+`:::"first-ns:second-ns"`, &logRecorder{}), "tok", tcp("nested:1"))
	wantNotFound(t, newRedis(t, "127.0.0.1:"+port+":3::", &logRecorder{}), "ns:missing")
}

func TestTokenRedisPassword(t *testing.T) {
	server := startRedis(t, "--requirepass", "s3cret:with:colons")
	server.set(t, 0, "s3cret:with:colons", "tok", "h:1")
	port := strconv.Itoa(server.port)
	wantTarget(t, newRedis(t, "127.0.0.1:"+port+`::"s3cret:with:colons"`, &logRecorder{}), "tok", tcp("h:1"))

	_, err := newRedis(t, "127.0.0.1:"+port+"::wrong", &logRecorder{}).Lookup(testContext(t, 5*time.Second), "tok")
	var backendErr *BackendError
	if !errors.As(err, &backendErr) {
		t.Errorf("Lookup with a wrong password = %v, want a BackendError", err)
	}
}

func TestTokenRedisServerStops(t *testing.T) {
	server := startRedis(t)
	server.set(t, 0, "", "tok", "h:1")
	p := newRedis(t, server.addr(), &logRecorder{})
	wantTarget(t, p, "tok", tcp("h:1"))
	server.stop()

	start := time.Now()
	_, err := p.Lookup(testContext(t, 3*time.Second), "tok")
	var backendErr *BackendError
	if !errors.As(err, &backendErr) || backendErr.Backend != "redis "+server.addr() {
		t.Errorf("Lookup after the server stopped = %v, want a BackendError naming redis %s", err, server.addr())
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Lookup after the server stopped took %v", elapsed)
	}
}

func TestTokenRedisSilentServer(t *testing.T) {
	// Accepts and never answers: only the deadline ends the lookup.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	t.Cleanup(func() { l.Close(); conns.Wait() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				buf := make([]byte, 512)
				for {
					if _, err := conn.Read(buf); err != nil {
						conn.Close()
						return
					}
				}
			})
		}
	}()
	p := newRedis(t, l.Addr().String(), &logRecorder{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = p.Lookup(ctx, "tok")
	var backendErr *BackendError
	if !errors.As(err, &backendErr) || !backendErr.Timeout() {
		t.Errorf("Lookup against a silent server = %v, want a BackendError that is a timeout", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Lookup took %v past a 300ms deadline", elapsed)
	}
	p.Close()
}

func TestTokenRedisPoolBound(t *testing.T) {
	server := startRedis(t)
	server.set(t, 0, "", "tok", "h:1")
	p := newRedis(t, server.addr(), &logRecorder{})
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 20 {
				if _, err := p.Lookup(testContext(t, 5*time.Second), "tok"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	admin := redis.NewClient(&redis.Options{Addr: server.addr(), PoolSize: 1, Protocol: 2})
	defer admin.Close()
	list, err := admin.ClientList(testContext(t, 5*time.Second)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if clients := strings.Count(strings.TrimSpace(list), "\n") + 1; clients > redisConns+1 {
		t.Errorf("%d clients connected after 64 concurrent lookers, want at most %d + the admin's", clients, redisConns)
	}
}
