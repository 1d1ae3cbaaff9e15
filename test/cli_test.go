package test

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Item m: usage errors exit 2 with a one-line reason followed by the usage.
func TestCLIUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string // in the reason line (case-insensitive); "" = any
	}{
		{"bad-listen-port", []string{"abc", "127.0.0.1:5900"}, "port"},
		{"bad-listen-port-with-host", []string{"127.0.0.1:xyz", "127.0.0.1:5900"}, "port"},
		{"listen-port-out-of-range", []string{"70000", "127.0.0.1:5900"}, "port"},
		{"bad-target-port", []string{"6080", "127.0.0.1:vnc"}, "port"},
		{"target-without-port", []string{"6080", "127.0.0.1"}, ""},
		{"no-args", []string{}, ""},
		{"one-arg", []string{"6080"}, ""},
		{"three-args", []string{"6080", "127.0.0.1:5900", "extra"}, ""},
		{"unix-target-and-target", []string{"--unix-target", "/tmp/x.sock", "6080", "127.0.0.1:5900"}, ""},
		{"unix-target-no-listen", []string{"--unix-target", "/tmp/x.sock"}, ""},
		{"unknown-option", []string{"--no-such-option", "6080", "127.0.0.1:5900"}, ""},
		{"heartbeat-not-a-number", []string{"--heartbeat", "often", "6080", "127.0.0.1:5900"}, ""},
		{"bad-unix-listen-mode", []string{"--unix-listen", "/tmp/x.sock", "--unix-listen-mode", "999", "6080", "127.0.0.1:5900"}, ""},
		{"cert-missing", []string{"--cert", "/nonexistent/x.pem", "6080", "127.0.0.1:5900"}, "cert"},
		{"cert-equals-missing", []string{"--cert=/nonexistent/x.pem", "6080", "127.0.0.1:5900"}, "cert"},
		{"ssl-ciphers-unknown", []string{"--ssl-ciphers", "ECDHE-RSA-AES128-GCM-SHA256:NO-SUCH-CIPHER", "6080", "127.0.0.1:5900"}, "no-such-cipher"},
		{"ssl-version-unknown", []string{"--ssl-version", "sslv3", "6080", "127.0.0.1:5900"}, "ssl-version"},
		{"web-auth-without-auth-plugin", []string{"--web", "/tmp", "--web-auth", "6080", "127.0.0.1:5900"}, "--auth-plugin"},
		{"web-not-a-directory", []string{"--web", "/nonexistent-web-root", "6080", "127.0.0.1:5900"}, "not a directory"},
		{"daemon-and-inetd", []string{"-D", "--inetd", "127.0.0.1:5900"}, "--inetd"},
		{"ssl-only-without-cert", []string{"--ssl-only", "--cert", "/nonexistent/self.pem", "6080", "127.0.0.1:5900"}, "cert"},
		{"inetd-with-listen-positional", []string{"--inetd", "6080", "127.0.0.1:5900"}, "too many"},
		{"token-plugin-unknown", []string{"--token-plugin", "my.Plugin", "6080"}, "tokenfile"},
		{"target-config-and-target", []string{"--target-config", "/tmp/t", "6080", "127.0.0.1:5900"}, "target"},
		{"wrap-program-and-target", []string{"6080", "127.0.0.1:5900", "--", "sleep", "100"}, "target"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, 10*time.Second, tc.args...)
			if r.code != 2 {
				t.Fatalf("exit code %d, want 2; stderr:\n%s", r.code, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if len(lines) < 2 {
				t.Fatalf("stderr has %d line(s), want a reason line then the usage:\n%s", len(lines), r.stderr)
			}
			reason := lines[0]
			if strings.TrimSpace(reason) == "" || strings.HasPrefix(strings.ToLower(reason), "usage") {
				t.Errorf("first stderr line %q is not a reason", reason)
			}
			if tc.want != "" && !strings.Contains(strings.ToLower(reason), tc.want) {
				t.Errorf("reason %q does not mention %q", reason, tc.want)
			}
			if !strings.Contains(strings.ToLower(strings.Join(lines[1:], "\n")), "usage") {
				t.Errorf("no usage after the reason:\n%s", r.stderr)
			}
		})
	}
}

// Item m: --version and --help exit 0.
func TestCLIVersionHelp(t *testing.T) {
	t.Parallel()
	r := runCLI(t, 10*time.Second, "--version")
	if r.code != 0 {
		t.Errorf("--version: exit %d, stderr %q", r.code, r.stderr)
	}
	if out := r.stdout + r.stderr; !strings.ContainsAny(out, "0123456789") {
		t.Errorf("--version printed no version: %q", out)
	}
	for _, h := range []string{"-h", "--help"} {
		r := runCLI(t, 10*time.Second, h)
		if r.code != 0 {
			t.Errorf("%s: exit %d", h, r.code)
		}
		out := r.stdout + r.stderr
		for _, want := range []string{"sage", "--unix-target", "--heartbeat", "--idle-timeout", "--run-once"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s output lacks %q", h, want)
			}
		}
	}
}

// Item m: a port already in use makes websockify exit non-zero.
func TestCLIBindInUse(t *testing.T) {
	t.Parallel()
	t.Run("plain-listener", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		r := runCLI(t, 15*time.Second, l.Addr().String(), "127.0.0.1:5900")
		if r.code == 0 {
			t.Fatalf("exit code 0 with the port taken; stderr:\n%s", r.stderr)
		}
	})
	t.Run("another-websockify", func(t *testing.T) {
		t.Parallel()
		// The usual accident: starting websockify twice on one port. The
		// second must fail to bind (and exit non-zero), not silently share
		// the port and take clients away from the first.
		echoA, echoB := startEcho(t), startEcho(t)
		first := startProxy(t, echoA.addr)
		second, err := startProcess(t, []string{first.addr, echoB.addr}, 0, "tcp", first.addr, first.port)
		if err != nil && second == nil {
			t.Fatal(err)
		}
		code, exited := second.waitExit(5 * time.Second)
		if exited && code != 0 {
			return
		}
		for i := 0; i < 20; i++ {
			c := dialWS(t, first, modeBinary)
			mustEcho(t, c, []byte("x"))
			c.conn.Close()
		}
		if exited {
			t.Fatalf("second websockify on the port of the first exited with code 0")
		}
		t.Errorf("second websockify on %s is still running 5s after start; it took %d of 20 clients", first.addr, echoB.total.Load())
	})
}

// --run-once with a token plugin: the first routed session is the one, and
// a second client meanwhile is not taken.
func TestCLIRunOnceToken(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, tokens, "once: "+echo.addr+"\n")
	p := launchProxy(t, proxyConfig{Args: []string{"--run-once", "--token-plugin", "TokenFile", "--token-source", tokens}})
	r, err := upgradeTo(p, nil, "/?token=once")
	if err != nil || r.status != 101 {
		t.Fatalf("first session: %v %d", err, r.status)
	}
	mustEcho(t, r.c, []byte("once"))
	// A second client while the first is open is refused.
	if second, err := upgradeTo(p, nil, "/?token=once"); err == nil && second.status == 101 {
		second.c.conn.Close()
		t.Errorf("--run-once took a second routed session")
	}
	r.c.conn.Close()
	if code, exited := p.waitExit(10 * time.Second); !exited || code != 0 {
		t.Fatalf("after the session: exited %v, code %d", exited, code)
	}
}

// Item m: --run-once exits after the first upgraded session ends.
func TestCLIRunOnce(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--run-once")

	// A request that is not an upgrade does not count.
	resp, _ := rawRequest(t, p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 405 {
		t.Fatalf("status %d, want 405", resp.StatusCode)
	}
	time.Sleep(300 * time.Millisecond)
	if !p.running() {
		t.Fatalf("exited after a non-WebSocket request")
	}
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("once"))
	time.Sleep(300 * time.Millisecond)
	if !p.running() {
		t.Fatalf("exited while the session was open")
	}
	if err := c.sendClose(1000, ""); err != nil {
		t.Fatal(err)
	}
	if code, _, _, err := c.expectClose(); err != nil || code != 1000 {
		t.Fatalf("close reply %d, %v", code, err)
	}
	code, exited := p.waitExit(10 * time.Second)
	if !exited {
		t.Fatalf("still running 10s after the session ended")
	}
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// Item m: --idle-timeout exits when idle, not while a session is open.
func TestCLIIdleTimeout(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	t.Run("idle-from-start", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, echo.addr, "--idle-timeout", "1")
		code, exited := p.waitExit(10 * time.Second)
		if !exited {
			t.Fatalf("--idle-timeout 1: still running after 10s with no connection")
		}
		if code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
	})
	t.Run("not-while-busy", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, echo.addr, "--idle-timeout", "2")
		c := dialWS(t, p, modeBinary)
		for i := 0; i < 8; i++ { // 4 s with a session open
			mustEcho(t, c, []byte("busy"))
			time.Sleep(500 * time.Millisecond)
		}
		if !p.running() {
			t.Fatalf("--idle-timeout 2 exited while a session was open")
		}
		c.conn.Close()
		if _, exited := p.waitExit(15 * time.Second); !exited {
			t.Fatalf("--idle-timeout 2: still running 15s after the last session ended")
		}
	})
}

// --timeout N: stop accepting after N s, exit when the last session ends.
func TestCLITimeout(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--timeout", "2")
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("before the timeout"))
	time.Sleep(3 * time.Second)
	if !p.running() {
		t.Fatalf("--timeout exited while a session was open")
	}
	mustEcho(t, c, []byte("after the timeout, same session"))
	// New clients are no longer served.
	if c2, err := dialWSE(p, modeBinary, nil); err == nil {
		err = c2.echo([]byte("late"))
		c2.conn.Close()
		if err == nil {
			t.Errorf("a new client was served after --timeout")
		}
	}
	c.conn.Close()
	if _, exited := p.waitExit(15 * time.Second); !exited {
		t.Fatalf("--timeout: still running 15s after the last session ended")
	}
}

// Item m: --heartbeat 1 sends pings; the session keeps working.
func TestCLIHeartbeat(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--heartbeat", "1")
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("hb"))
	pings := 0
	deadline := time.Now().Add(8 * time.Second)
	for pings < 2 && time.Now().Before(deadline) {
		_ = c.conn.SetReadDeadline(deadline)
		f, err := readFrame(c.br)
		if err != nil {
			t.Fatalf("after %d pings: %v", pings, err)
		}
		if f.op != ws.OpPing {
			t.Fatalf("unexpected frame op %v %q", f.op, f.payload)
		}
		pings++
		if err := c.write(masked(ws.OpPong, f.payload)); err != nil {
			t.Fatal(err)
		}
	}
	if pings < 2 {
		t.Fatalf("%d pings in 8s with --heartbeat 1, want at least 2", pings)
	}
	// Data still flows (the echo reader skips further pings).
	mustEcho(t, c, []byte("still alive"))
}

// --traffic prints the per-frame symbols to stdout; -v is accepted.
func TestCLITrafficVerbose(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--traffic", "-v")
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("traffic"))
	// A frame in two writes: the first read holds part of it ("}.").
	frame := c.dataFrame([]byte("split frame"))
	if err := c.write(frame[:5]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := c.write(frame[5:]); err != nil {
		t.Fatal(err)
	}
	if got, err := c.readN(len("split frame")); err != nil || string(got) != "split frame" {
		t.Fatalf("split frame echo %q, %v", got, err)
	}
	c.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		out := p.stdout.String()
		if strings.Contains(out, "Traffic Legend:") && strings.Contains(out, "}.") && strings.Contains(out, ">") &&
			strings.Contains(out, "{") && strings.Contains(out, "<") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("--traffic stdout %q lacks the legend or one of }. > { <", p.stdout.String())
}

// Accepted compatibility options do not stop the proxy from working.
func TestCLICompatOptions(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--auto-pong", "--libserver", "-6")
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("compat"))
	// Positionals may come before options (GNU style): target first here.
	port := freePort(t, "127.0.0.1")
	q, err := startProcess(t, []string{"127.0.0.1:" + strconv.Itoa(port), echo.addr, "--heartbeat=30"}, 0, "tcp", "127.0.0.1:"+strconv.Itoa(port), port)
	if err != nil {
		t.Fatal(err)
	}
	c2 := dialWS(t, q, modeBinary)
	mustEcho(t, c2, []byte("options after positionals"))
}

// The forms of the listen positional (section 1): the address is split at
// its last colon and brackets are stripped.
func TestCLIListenForms(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	for _, tc := range []struct {
		name   string
		listen func(port string) string
		dial   string // host to dial
	}{
		{"port-only", func(p string) string { return p }, "127.0.0.1"},
		{"colon-port", func(p string) string { return ":" + p }, "127.0.0.1"},
		{"any-ipv4", func(p string) string { return "0.0.0.0:" + p }, "127.0.0.1"},
		{"localhost", func(p string) string { return "localhost:" + p }, "127.0.0.1"},
		{"ipv4", func(p string) string { return "127.0.0.1:" + p }, "127.0.0.1"},
		{"bracketed-ipv6", func(p string) string { return "[::1]:" + p }, "::1"},
		{"bare-ipv6", func(p string) string { return "::1:" + p }, "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port := strconv.Itoa(freePort(t, tc.dial))
			portN, _ := strconv.Atoi(port)
			p, err := startProcess(t, []string{tc.listen(port), echo.addr}, 0, "tcp", net.JoinHostPort(tc.dial, port), portN)
			if err != nil {
				t.Fatalf("websockify %s: %v", tc.listen(port), err)
			}
			c := dialWS(t, p, modeBinary)
			mustEcho(t, c, []byte(tc.name))
		})
	}
}

// SPEC section 9: SIGTERM and SIGINT stop accepting, close the sessions and
// exit 0.
func TestCLISignalsStop(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			echo := startEcho(t)
			p := startProxy(t, echo.addr)
			c := dialWS(t, p, modeBinary)
			mustEcho(t, c, []byte("before the signal"))
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			code, exited := p.waitExit(10 * time.Second)
			if !exited {
				t.Fatalf("still running 10s after %v", sig)
			}
			if code != 0 {
				t.Errorf("exit code %d after %v, want 0", code, sig)
			}
			// The client sees a close frame 1001 (when the engine closed the
			// target first) or just the end of the connection.
			f, err := c.nextFrame()
			if err == nil && (f.op != 8 || len(f.payload) < 2 || int(f.payload[0])<<8|int(f.payload[1]) != 1001) {
				t.Errorf("after %v: got frame %+v, want close 1001 or the connection closed", sig, f)
			}
			if err == nil {
				if _, err := c.nextFrame(); err == nil {
					t.Errorf("session still open after the proxy exited")
				}
			}
		})
	}
}
