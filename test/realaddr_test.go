package test

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Real client addresses behind a load balancer: PROXY protocol v1 and v2
// headers (from Debian's haproxy and by hand), X-Forwarded-For and
// Forwarded, believed only from --trusted-proxies.

// dialFrom connects to p from the local address ip (any of 127.0.0.0/8 is
// this machine), so that a test can be a client the proxy does or does
// not trust.
func dialFrom(addr, ip string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.Dial("tcp", addr)
}

// proxyV1 is a PROXY protocol v1 header.
func proxyV1(src, dst netip.AddrPort) []byte {
	proto := "TCP4"
	if src.Addr().Is6() {
		proto = "TCP6"
	}
	return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", proto, src.Addr(), dst.Addr(), src.Port(), dst.Port())
}

const proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"

// proxyV2 is a PROXY protocol v2 header with the PROXY command (LOCAL when
// src is not valid).
func proxyV2(src, dst netip.AddrPort) []byte {
	b := []byte(proxyV2Sig)
	if !src.IsValid() {
		return append(b, 0x20, 0x00, 0, 0)
	}
	var addrs []byte
	fam := byte(0x11)
	if src.Addr().Is4() {
		s, d := src.Addr().As4(), dst.Addr().As4()
		addrs = append(s[:], d[:]...)
	} else {
		fam = 0x21
		s, d := src.Addr().As16(), dst.Addr().As16()
		addrs = append(s[:], d[:]...)
	}
	addrs = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(addrs, src.Port()), dst.Port())
	b = append(b, 0x21, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)))
	return append(b, addrs...)
}

// upgradedAs is the log line of a ws:// upgrade from addr, whose line
// prefix is addr too.
func upgradedAs(addr string) string {
	return addr + " - - ["
}

// waitLogLine waits for a line containing every one of parts.
func waitLogLine(p *proxy, d time.Duration, parts ...string) bool {
	end := time.Now().Add(d)
	for {
		if countLogLines(p, parts...) > 0 {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countLogLines counts the proxy's log lines containing every one of parts.
func countLogLines(p *proxy, parts ...string) int {
	n := 0
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		all := true
		for _, part := range parts {
			all = all && strings.Contains(line, part)
		}
		if all {
			n++
		}
	}
	return n
}

// expectClosedAndLogged checks that conn is closed by the proxy and that a line
// with every one of parts is logged, once.
func expectClosedAndLogged(t *testing.T, p *proxy, conn net.Conn, parts ...string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	if n, err := conn.Read(buf); err == nil {
		t.Errorf("got %q, want the connection closed", buf[:n])
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("connection still open after 10s")
	}
	if !waitLogLine(p, 5*time.Second, parts...) {
		t.Fatalf("no log line with %q", parts)
	}
	time.Sleep(300 * time.Millisecond) // past the log's flush delay: a second line would show
	if n := countLogLines(p, parts...); n != 1 {
		t.Errorf("%d lines with %q, want 1", n, parts)
	}
}

// upgradeOver sends pre (a PROXY header) on conn, then upgrades and echoes
// through the proxy.
func upgradeOver(t *testing.T, conn net.Conn, pre []byte, extra ...string) {
	t.Helper()
	if len(pre) > 0 {
		if _, err := conn.Write(pre); err != nil {
			t.Fatal(err)
		}
	}
	c, err := handshakeHyBi(conn, hybiReq{Protocol: modeBinary, Extra: extra}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEcho(t, c, []byte("real address"))
}

func TestRealAddrProxyProtocolByHand(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	dst := netip.MustParseAddrPort("127.0.0.1:6080")

	for _, tt := range []struct {
		name   string
		header []byte
		client string
	}{
		{"v1 IPv4", proxyV1(netip.MustParseAddrPort("203.0.113.7:51000"), dst), "203.0.113.7"},
		{"v1 IPv6", proxyV1(netip.MustParseAddrPort("[2001:db8::7]:51000"), netip.MustParseAddrPort("[2001:db8::1]:6080")), "2001:db8::7"},
		{"v2 IPv4", proxyV2(netip.MustParseAddrPort("198.51.100.4:4000"), dst), "198.51.100.4"},
		{"v2 IPv6", proxyV2(netip.MustParseAddrPort("[2001:db8::9]:4000"), netip.MustParseAddrPort("[2001:db8::1]:6080")), "2001:db8::9"},
		{"v2 LOCAL", proxyV2(netip.AddrPort{}, netip.AddrPort{}), "127.0.0.1"},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), "127.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, echo.addr, "-v", "--proxy-protocol", "--trusted-proxies", "127.0.0.1/32")
			conn, err := dialFrom(p.addr, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			upgradeOver(t, conn, tt.header)
			if !waitLogLine(p, 5*time.Second, upgradedAs(tt.client), tt.client+": Plain non-SSL (ws://) WebSocket connection") {
				t.Errorf("the upgrade is not logged as from %s", tt.client)
			}
			if tt.client != "127.0.0.1" && countLogLines(p, "127.0.0.1: PROXY v", "header: client "+tt.client+" via 127.0.0.1") != 1 {
				t.Errorf("-v does not log which proxy %s came through", tt.client)
			}
		})
	}

	// The header and the request in one write, in many small ones.
	t.Run("v1 byte by byte", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, echo.addr, "--proxy-protocol", "--trusted-proxies", "127.0.0.1")
		conn, err := dialFrom(p.addr, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, b := range proxyV1(netip.MustParseAddrPort("192.0.2.44:1"), dst) {
			if _, err := conn.Write([]byte{b}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		upgradeOver(t, conn, nil)
		if !waitLogLine(p, 5*time.Second, upgradedAs("192.0.2.44"), "192.0.2.44: Plain non-SSL") {
			t.Error("the upgrade is not logged as from 192.0.2.44")
		}
	})

	for _, tt := range []struct {
		name  string
		sent  string
		close bool // the client closes after sending (else it waits for the first-byte timeout)
		log   []string
	}{
		{"malformed v1", "PROXY TCP4 203.0.113.7 127.0.0.1 99999 6080\r\nGET / HTTP/1.1\r\n\r\n", false,
			[]string{"127.0.0.1: malformed PROXY v1 header: bad port, closing"}},
		{"malformed v1 no CRLF", "PROXY TCP4 " + strings.Repeat("1", 120), false,
			[]string{"127.0.0.1: malformed PROXY v1 header: no CRLF within 107 bytes"}},
		{"malformed v2", proxyV2Sig + "\x21\x41\x00\x0c" + strings.Repeat("\x01", 12), false,
			[]string{"127.0.0.1: malformed PROXY v2 header: unknown address family"}},
		{"truncated v1, timeout", "PROXY TCP4 203.0.113.7 127.0", false,
			[]string{"127.0.0.1: PROXY header not complete within 3s, closing"}},
		{"truncated v2, timeout", string(proxyV2(netip.MustParseAddrPort("198.51.100.4:4000"), dst)[:20]), false,
			[]string{"127.0.0.1: PROXY header not complete within 3s, closing"}},
		{"truncated v1, closed", "PROXY TCP4 203.0.113.7 127.0", true,
			[]string{"127.0.0.1: connection closed before its PROXY header was complete"}},
		{"no header", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false,
			[]string{"127.0.0.1: no PROXY header from trusted proxy 127.0.0.1 (--proxy-protocol), closing"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			echo := startEcho(t) // its own, to tell that nothing dialed it
			p := startProxy(t, echo.addr, "--proxy-protocol", "--trusted-proxies", "127.0.0.1/32")
			conn, err := dialFrom(p.addr, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte(tt.sent)); err != nil {
				t.Fatal(err)
			}
			if tt.close {
				_ = conn.(*net.TCPConn).CloseWrite()
			}
			start := time.Now()
			expectClosedAndLogged(t, p, conn, tt.log...)
			if strings.Contains(tt.name, "timeout") && time.Since(start) < 2*time.Second {
				t.Errorf("refused after %v, before the 3s first-byte wait", time.Since(start))
			}
			if echo.total.Load() != 0 {
				t.Errorf("the target was dialed")
			}
		})
	}

	// Trust only 127.0.0.1; 127.0.0.3 is a client like any other.
	t.Run("untrusted sends a header", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, echo.addr, "--proxy-protocol", "--trusted-proxies", "127.0.0.1/32")
		for i, header := range [][]byte{proxyV1(netip.MustParseAddrPort("203.0.113.7:1"), dst), proxyV2(netip.MustParseAddrPort("203.0.113.7:1"), dst)} {
			conn, err := dialFrom(p.addr, "127.0.0.3")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(header); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := conn.Read(make([]byte, 100)); err == nil {
				t.Errorf("v%d: got %d bytes, want the connection closed", i+1, n)
			}
			want := "127.0.0.3: PROXY header from untrusted address 127.0.0.3 refused"
			if !waitLogLine(p, 5*time.Second, want) {
				t.Fatalf("v%d: not logged: %q", i+1, want)
			}
			time.Sleep(300 * time.Millisecond)
			if n := countLogLines(p, want); n != i+1 {
				t.Errorf("v%d: %d refusals logged, want %d", i+1, n, i+1)
			}
		}
		if countLogLines(p, "203.0.113.7") != 0 {
			t.Error("the untrusted header's address was used")
		}
	})
	t.Run("untrusted direct client", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, echo.addr, "--proxy-protocol", "--trusted-proxies", "127.0.0.1/32")
		conn, err := dialFrom(p.addr, "127.0.0.3")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		upgradeOver(t, conn, nil)
		if !waitLogLine(p, 5*time.Second, upgradedAs("127.0.0.3"), "127.0.0.3: Plain non-SSL") {
			t.Error("the direct client is not logged as 127.0.0.3")
		}
	})

	// wss://: the header comes first, TLS after it.
	t.Run("wss behind PROXY v2", func(t *testing.T) {
		t.Parallel()
		pk := newPKI(t)
		p := startProxy(t, echo.addr, "--cert", pk.bundleFile, "--proxy-protocol", "--trusted-proxies", "127.0.0.0/30")
		raw, err := dialFrom(p.addr, "127.0.0.2")
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if _, err := raw.Write(proxyV2(netip.MustParseAddrPort("[2001:db8::42]:443"), netip.MustParseAddrPort("[2001:db8::1]:6080"))); err != nil {
			t.Fatal(err)
		}
		conn := tls.Client(raw, pk.clientTLS(nil))
		_ = conn.SetDeadline(time.Now().Add(ioTimeout))
		if err := conn.Handshake(); err != nil {
			t.Fatalf("TLS after the PROXY header: %v", err)
		}
		_ = conn.SetDeadline(time.Time{})
		upgradeOver(t, conn, nil)
		if !waitLogLine(p, 5*time.Second, upgradedAs("2001:db8::42"), "2001:db8::42: SSL/TLS (wss://) WebSocket connection") {
			t.Error("the wss:// upgrade is not logged as from 2001:db8::42")
		}
	})

	// Auth plugins and their refusals see the real address too.
	t.Run("auth refusal", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, echo.addr, "--proxy-protocol", "--trusted-proxies", "127.0.0.1",
			"--auth-plugin", "BasicHTTPAuth", "--auth-source", "u:p")
		conn, err := dialFrom(p.addr, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write(append(proxyV1(netip.MustParseAddrPort("203.0.113.70:1"), dst), hybiReq{Path: "/", Host: "x", Key: randomKey(), Version: "13"}.String()...)); err != nil {
			t.Fatal(err)
		}
		if !waitLogLine(p, 5*time.Second, upgradedAs("203.0.113.70"), "203.0.113.70: authentication failed: no credentials") {
			t.Error("the refusal is not logged as from 203.0.113.70")
		}
	})
}

func TestRealAddrForwardedHeaders(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "-v", "--trusted-proxies", "127.0.0.1,::1")
	for _, tt := range []struct {
		name   string
		from   string
		header string
		client string
	}{
		{"XFF from trusted", "127.0.0.1", "X-Forwarded-For: 203.0.113.21", "203.0.113.21"},
		{"XFF chain from trusted", "127.0.0.1", "X-Forwarded-For: 6.6.6.6, 203.0.113.22, 127.0.0.1", "203.0.113.22"},
		{"Forwarded from trusted", "127.0.0.1", `Forwarded: for="[2001:db8::23]:4711";proto=https`, "2001:db8::23"},
		{"Forwarded wins", "127.0.0.1", "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=203.0.113.24", "203.0.113.24"},
		{"Forwarded unknown", "127.0.0.1", "Forwarded: for=unknown", "127.0.0.1"},
		{"XFF from untrusted", "127.0.0.5", "X-Forwarded-For: 203.0.113.25", "127.0.0.5"},
		{"Forwarded from untrusted", "127.0.0.6", "Forwarded: for=203.0.113.26", "127.0.0.6"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := dialFrom(p.addr, tt.from)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			upgradeOver(t, conn, nil, tt.header)
			if !waitLogLine(p, 5*time.Second, upgradedAs(tt.client), tt.client+": Plain non-SSL") {
				t.Errorf("the upgrade is not logged as from %s", tt.client)
			}
			if strings.Contains(tt.name, "untrusted") && countLogLines(p, tt.client+" - - [", "via") != 0 {
				t.Error("an untrusted client's header was believed")
			}
		})
	}
}

// ---- Debian's haproxy in front ----

// startHAProxy runs haproxy in the foreground with the given configuration
// (its frontend listening on listen) and waits until it accepts.
func startHAProxy(t *testing.T, listen, config string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		bin = "/usr/sbin/haproxy"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("haproxy is not installed (scripts/install-test-deps.sh installs it): %v", err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfgPath)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("haproxy exited: %s", out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("haproxy not accepting on %s: %s", listen, out.String())
}

// haproxyConfig puts haproxy on listen in mode (tcp or http) in front of
// server (an address, or a unix socket's path) with the server options.
func haproxyConfig(mode, listen, server, serverOpts string) string {
	return fmt.Sprintf(`global
	maxconn 256
defaults
	mode %s
	timeout connect 5s
	timeout client 30s
	timeout server 30s
	timeout tunnel 30s
frontend fe
	bind %s
	default_backend be
backend be
	server ws %s %s
`, mode, listen, server, serverOpts)
}

func TestRealAddrHAProxy(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	pk := newPKI(t)
	for _, tt := range []struct {
		name   string
		option string // the server option of haproxy's backend
		unix   bool   // websockify on a unix socket (--unix-listen)
		tls    bool   // wss:// through haproxy's TCP mode
	}{
		{"send-proxy", "send-proxy", false, false},
		{"send-proxy-v2", "send-proxy-v2", false, false},
		{"send-proxy wss", "send-proxy", false, true},
		{"send-proxy-v2 wss", "send-proxy-v2", false, true},
		{"send-proxy-v2 unix socket", "send-proxy-v2", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"-v", "--cert", pk.bundleFile, "--proxy-protocol", echo.addr}
			cfg := proxyConfig{Args: args}
			if tt.unix {
				cfg.UnixListen = filepath.Join(t.TempDir(), "ws.sock")
			} else {
				cfg.Args = append([]string{"--trusted-proxies", "127.0.0.1"}, cfg.Args...)
			}
			p := launchProxy(t, cfg)
			front := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, "127.0.0.1")))
			startHAProxy(t, front, haproxyConfig("tcp", front, p.addr, tt.option))

			conn, err := dialFrom(front, "127.0.0.2")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if tt.tls {
				tc := tls.Client(conn, pk.clientTLS(nil))
				_ = tc.SetDeadline(time.Now().Add(ioTimeout))
				if err := tc.Handshake(); err != nil {
					t.Fatalf("TLS through haproxy: %v", err)
				}
				_ = tc.SetDeadline(time.Time{})
				conn = tc
			}
			upgradeOver(t, conn, nil)
			scheme := "Plain non-SSL (ws://)"
			if tt.tls {
				scheme = "SSL/TLS (wss://)"
			}
			if !waitLogLine(p, 5*time.Second, upgradedAs("127.0.0.2"), "127.0.0.2: "+scheme+" WebSocket connection") {
				t.Error("the upgrade is not logged as from 127.0.0.2")
			}
			peer := "127.0.0.1"
			if tt.unix {
				peer = "@" // how a unix socket's unnamed peer is logged
			}
			if !waitLogLine(p, 5*time.Second, peer+": PROXY v", "header: client 127.0.0.2 via "+peer) {
				t.Errorf("no -v line naming the proxy %s", peer)
			}
		})
	}

	// HTTP mode: haproxy adds X-Forwarded-For; what the client sent in one
	// itself stays to the left, unbelieved.
	t.Run("http forwardfor", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, echo.addr, "-v", "--trusted-proxies", "127.0.0.1")
		front := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, "127.0.0.1")))
		config := strings.Replace(haproxyConfig("http", front, p.addr, ""), "\tdefault_backend be\n", "\toption forwardfor\n\tdefault_backend be\n", 1)
		startHAProxy(t, front, config)
		conn, err := dialFrom(front, "127.0.0.2")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		upgradeOver(t, conn, nil, "X-Forwarded-For: 6.6.6.6")
		if !waitLogLine(p, 5*time.Second, upgradedAs("127.0.0.2"), "127.0.0.2: Plain non-SSL (ws://) WebSocket connection") {
			t.Error("the upgrade is not logged as from 127.0.0.2")
		}
		if !waitLogLine(p, 5*time.Second, "127.0.0.1: X-Forwarded-For: client 127.0.0.2 via 127.0.0.1") {
			t.Error("no -v line naming the proxy")
		}
		if countLogLines(p, "6.6.6.6") != 0 {
			t.Error("the client's own X-Forwarded-For was believed")
		}
	})
}

// --workers: each worker reads the header (they share the flags).
func TestRealAddrWorkers(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--workers", "2", "--proxy-protocol", "--trusted-proxies", "127.0.0.1")
	for i := range 4 {
		conn, err := dialFrom(p.addr, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		client := fmt.Sprintf("192.0.2.%d", 100+i)
		upgradeOver(t, conn, proxyV1(netip.MustParseAddrPort(client+":1"), netip.MustParseAddrPort("127.0.0.1:1")))
		conn.Close()
		if !waitLogLine(p, 5*time.Second, upgradedAs(client), client+": Plain non-SSL") {
			t.Errorf("the upgrade is not logged as from %s", client)
		}
	}
}

// An inherited listener (--inetd's fd 0) goes through the same steps.
func TestRealAddrInherited(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	f, addr := listenerFile(t)
	cmd := exec.Command(binPath, "--inetd", "--proxy-protocol", "--trusted-proxies", "127.0.0.1", echo.addr)
	cmd.Stdin = f
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := &proxy{t: t, network: "tcp", addr: addr, stderr: stderr}
	conn, err := dialFrom(addr, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	upgradeOver(t, conn, proxyV2(netip.MustParseAddrPort("203.0.113.99:5"), netip.MustParseAddrPort("127.0.0.1:1")))
	if !waitLogLine(p, 5*time.Second, upgradedAs("203.0.113.99"), "203.0.113.99: Plain non-SSL") {
		t.Errorf("the upgrade is not logged as from 203.0.113.99:\n%s", stderr.String())
	}
	conn2, err := dialFrom(addr, "127.0.0.4")
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if _, err := conn2.Write(proxyV1(netip.MustParseAddrPort("203.0.113.98:5"), netip.MustParseAddrPort("127.0.0.1:1"))); err != nil {
		t.Fatal(err)
	}
	expectClosedAndLogged(t, p, conn2, "127.0.0.4: PROXY header from untrusted address 127.0.0.4 refused")
}
