package test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// shortTempDir returns a temporary directory with a path short enough for a
// unix socket (sun_path holds 108 bytes).
func shortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "wsk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Item i: a unix socket target.
func TestUnixTarget(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(shortTempDir(t), "vnc.sock")
	echo := startTarget(t, "unix", sock, echoHandler)
	p := launchProxy(t, proxyConfig{Args: []string{"--unix-target", sock}})
	for _, mode := range []string{modeBinary, modeBase64} {
		c := dialWS(t, p, mode)
		data := make([]byte, 300<<10)
		fillPattern(data, 0)
		if err := roundTrip(c, data, 3); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
	}
	if n := echo.total.Load(); n != 2 {
		t.Errorf("unix target saw %d connections, want 2", n)
	}
}

// Item i: listening on a unix socket, its mode by default and when given.
func TestUnixListen(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	for _, tc := range []struct {
		name string
		mode string // --unix-listen-mode; "" for the default
		want os.FileMode
	}{
		{"default-mode", "", 0o600},
		{"mode-0660", "0660", 0o660},
		{"mode-0777", "0777", 0o777},
		{"mode-0640", "640", 0o640},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sock := filepath.Join(shortTempDir(t), "ws.sock")
			args := []string{echo.addr}
			if tc.mode != "" {
				args = append([]string{"--unix-listen-mode", tc.mode}, args...)
			}
			p := launchProxy(t, proxyConfig{UnixListen: sock, Args: args})
			fi, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeSocket == 0 {
				t.Fatalf("%s is not a socket: %v", sock, fi.Mode())
			}
			if got := fi.Mode().Perm(); got != tc.want {
				t.Errorf("socket mode %04o, want %04o", got, tc.want)
			}
			c := dialWS(t, p, modeBinary)
			mustEcho(t, c, []byte("over a unix socket"))
			// The TCP port of the listen positional is not used.
			if conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(p.port)); err == nil {
				conn.Close()
				t.Errorf("with --unix-listen, the TCP port %d accepts connections too", p.port)
			}
		})
	}
}

// ipv6Available reports whether ::1 can be listened on.
func ipv6Available() bool {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Item j: IPv6 listen address and IPv6 target.
func TestIPv6(t *testing.T) {
	t.Parallel()
	if !ipv6Available() {
		t.Fatal("IPv6 loopback ::1 is not available on this host: cannot test IPv6")
	}
	echo := startTarget(t, "tcp", "[::1]:0", echoHandler)
	port := echo.ln.Addr().(*net.TCPAddr).Port

	for _, tc := range []struct {
		name   string
		target string
	}{
		{"bracketed", "[::1]:" + strconv.Itoa(port)},
		{"last-colon", "::1:" + strconv.Itoa(port)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := launchProxy(t, proxyConfig{Host: "::1", Args: []string{tc.target}})
			if p.addr != net.JoinHostPort("::1", strconv.Itoa(p.port)) {
				t.Fatalf("proxy address %s", p.addr)
			}
			for _, mode := range []string{modeBinary, modeBase64} {
				c := dialWS(t, p, mode)
				data := make([]byte, 200<<10)
				fillPattern(data, 7)
				if err := roundTrip(c, data, 1); err != nil {
					t.Fatalf("%s: %v", mode, err)
				}
				// Both ends really are IPv6.
				if ra := c.conn.RemoteAddr().(*net.TCPAddr); ra.IP.To4() != nil {
					t.Errorf("client connected to %v", ra)
				}
			}
		})
	}

	t.Run("listen-positional-without-brackets", func(t *testing.T) {
		t.Parallel()
		// "::1:PORT" splits at the last colon.
		v6port := freePort(t, "::1")
		q := launchProxyRaw(t, "::1:"+strconv.Itoa(v6port), "[::1]:"+strconv.Itoa(port))
		c := dialWS(t, q, modeBinary)
		mustEcho(t, c, []byte("::1 without brackets"))
	})

	t.Run("no-host-is-dual-stack", func(t *testing.T) {
		t.Parallel()
		p := launchProxy(t, proxyConfig{Host: "-", Args: []string{"[::1]:" + strconv.Itoa(port)}})
		for _, host := range []string{"127.0.0.1", "::1"} {
			q := *p
			q.addr = net.JoinHostPort(host, strconv.Itoa(p.port))
			c, err := dialWSE(&q, modeBinary, nil)
			if err != nil {
				t.Fatalf("listening on all addresses, %s: %v", host, err)
			}
			if err := c.echo([]byte("dual stack via " + host)); err != nil {
				t.Errorf("%s: %v", host, err)
			}
			c.conn.Close()
		}
	})
}

// launchProxyRaw starts websockify with exactly args (the listen positional
// given by the caller) and waits until it accepts on listen.
func launchProxyRaw(t testing.TB, listen string, args ...string) *proxy {
	t.Helper()
	host, port, err := splitLast(listen)
	if err != nil {
		t.Fatal(err)
	}
	portN, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProcess(t, append([]string{listen}, args...), 0, "tcp", net.JoinHostPort(host, port), portN)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func splitLast(s string) (string, string, error) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			h := s[:i]
			if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
				h = h[1 : len(h)-1]
			}
			return h, s[i+1:], nil
		}
	}
	return "", "", &net.AddrError{Err: "no port", Addr: s}
}
