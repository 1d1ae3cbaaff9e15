package test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Wrapping a program (`websockify PORT -- PROGRAM ARGS`): the program's bind
// to PORT is moved to a loopback port by rebind.so, and the proxy serves
// PORT in front of it. Real programs: socat, python3, TigerVNC's Xvnc,
// inetutils telnetd.

// startWrapped runs websockify on a fresh port P with opts, then "--" and
// the program made by argv(P); it waits until P accepts.
func startWrapped(t *testing.T, opts []string, env []string, argv func(port int) []string) *proxy {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t, "127.0.0.1")
		listen := "127.0.0.1:" + strconv.Itoa(port)
		args := append(append([]string{listen}, opts...), "--")
		args = append(args, argv(port)...)
		p, err := startProcessEnv(t, args, 0, env, "tcp", listen, port)
		if err == nil {
			return p
		}
		lastErr = err
	}
	t.Fatalf("websockify with a wrapped program did not start: %v", lastErr)
	return nil
}

// socatEcho is a socat echo server on port; with fork it serves every
// connection, without it one and then exits.
func socatEcho(fork bool) func(int) []string {
	return func(port int) []string {
		opt := "TCP-LISTEN:" + strconv.Itoa(port) + ",reuseaddr"
		if fork {
			opt += ",fork"
		}
		return []string{"socat", opt, "EXEC:cat"}
	}
}

func requireSocat(t *testing.T) { requireFile(t, "/usr/bin/socat", "Debian package socat") }

// portRefused reports whether nothing listens on port (the wrapped program's
// bind was moved away from it: only websockify is there, and this checks
// the program did not also take it on another address).
func wrappedPortOf(t *testing.T, p *proxy) string {
	t.Helper()
	if !waitLog(p, "(port ", 5*time.Second) {
		t.Fatalf("the banner names no wrapped port")
	}
	s := p.stderr.String()
	i := strings.Index(s, "(port ")
	j := strings.IndexByte(s[i:], ')')
	return s[i+len("(port ") : i+j]
}

func TestWrapExitMode(t *testing.T) {
	requireSocat(t)
	// One session, then the program exits with status 5: so does websockify.
	p := startWrapped(t, nil, nil, func(port int) []string {
		return []string{"sh", "-c", fmt.Sprintf("socat TCP-LISTEN:%d,reuseaddr EXEC:cat; exit 5", port)}
	})
	wport := wrappedPortOf(t, p)
	// The program listens on the loopback port, not on the original one.
	if c, err := net.Dial("tcp", "127.0.0.1:"+wport); err != nil {
		t.Errorf("the wrapped program does not listen on 127.0.0.1:%s: %v", wport, err)
	} else {
		c.Close() // socat served this one; it exits now
	}
	code, exited := p.waitExit(15 * time.Second)
	if !exited || code != 5 {
		t.Fatalf("websockify exit %d (exited %v), want the program's 5\n%s", code, exited, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "Starting 'sh -c socat") {
		t.Errorf("no Starting line:\n%s", p.stderr.String())
	}
}

func TestWrapEcho(t *testing.T) {
	requireSocat(t)
	p := startWrapped(t, nil, nil, socatEcho(true))
	for i := 0; i < 3; i++ {
		c := dialWS(t, p, modeBinary)
		mustEcho(t, c, []byte(fmt.Sprintf("wrapped %d", i)))
		c.conn.Close()
	}
	if !waitLog(p, "connecting to command: 'socat TCP-LISTEN:", 5*time.Second) {
		t.Errorf("the dial's log line does not name the command, as the original's does")
	}
	// SIGTERM stops websockify and the program with it.
	wport := wrappedPortOf(t, p)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if _, exited := p.waitExit(10 * time.Second); !exited {
		t.Fatal("websockify did not stop on SIGTERM")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+wport)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the wrapped program still listens on %s after websockify stopped", wport)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWrapIgnoreMode: a program that daemonizes (its shell exits at once,
// the server it started keeps the port) is served on.
func TestWrapIgnoreMode(t *testing.T) {
	requireSocat(t)
	p := startWrapped(t, []string{"--wrap-mode", "ignore"}, nil, func(port int) []string {
		return []string{"sh", "-c", fmt.Sprintf("socat TCP-LISTEN:%d,reuseaddr,fork EXEC:cat & exit 0", port)}
	})
	if !waitLog(p, "Returned 0", 10*time.Second) {
		t.Fatalf("the shell's exit was not logged:\n%s", p.stderr.String())
	}
	time.Sleep(300 * time.Millisecond)
	if !p.running() {
		t.Fatalf("websockify exited in ignore mode")
	}
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("still served"))
}

// TestWrapRespawnTelnetd: inetutils telnetd behind socat (one connection,
// then it exits) with --wrap-mode respawn: reached twice, the second time
// after its wrapper was killed.
func TestWrapRespawnTelnetd(t *testing.T) {
	requireSocat(t)
	requireFile(t, telnetdPath, "Debian package inetutils-telnetd")
	p := startWrapped(t, []string{"--wrap-mode", "respawn"}, nil, func(port int) []string {
		return []string{"socat", "TCP-LISTEN:" + strconv.Itoa(port) + ",reuseaddr", "EXEC:" + telnetdPath}
	})
	// telnetd opens with option negotiation (IAC ...).
	greet := func(round int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := dialWSE(p, modeBinary, nil)
			if err == nil {
				_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				msg, err := c.readMessage()
				c.conn.Close()
				if err == nil && len(msg) > 0 && msg[0] == 0xff {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: telnetd not reached through websockify: %v\n%s", round, err, p.stderr.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	greet(1)
	// Kill the program (socat) outright: it comes back.
	for _, pid := range childPIDs(t, p.pid()) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	greet(2)
	if !strings.Contains(p.stderr.String(), "Respawning") && !strings.Contains(p.stderr.String(), "respawn") {
		t.Errorf("no respawn was logged:\n%s", p.stderr.String())
	}
}

// TestWrapIPv6Bind: a program that binds [::]:PORT is moved and reached.
func TestWrapIPv6Bind(t *testing.T) {
	script := `import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(5)
while True:
    c, _ = s.accept()
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)
    c.close()
`
	p := startWrapped(t, nil, nil, func(port int) []string {
		return []string{"/usr/bin/python3", "-c", script, strconv.Itoa(port)}
	})
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("over a moved IPv6 bind"))
}

// TestWrapStaticProgram: a statically linked program cannot be moved by
// LD_PRELOAD; websockify says so and exits instead of starting it.
func TestWrapStaticProgram(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	writeFile(t, src, "package main\nimport (\"net\"; \"os\")\nfunc main() { l, err := net.Listen(\"tcp\", \":\"+os.Args[1]); if err != nil { panic(err) }; select {}; _ = l }\n")
	bin := filepath.Join(dir, "static-server")
	build := exec.Command("go", "build", "-o", bin, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	build.Dir = dir
	writeFile(t, filepath.Join(dir, "go.mod"), "module staticserver\ngo 1.21\n")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a static program: %v\n%s", err, out)
	}
	port := freePort(t, "127.0.0.1")
	r := runCLI(t, 15*time.Second, "127.0.0.1:"+strconv.Itoa(port), "--", bin, strconv.Itoa(port))
	if r.code != 1 || !strings.Contains(r.stderr, "LD_PRELOAD") {
		t.Fatalf("exit %d, stderr %q; want exit 1 saying LD_PRELOAD cannot move it", r.code, r.stderr)
	}
	// And it was not started: nothing took the port.
	if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
		c.Close()
		t.Errorf("something listens on %d after the refusal", port)
	}
}

// TestWrapRebindBuiltOnDemand: with no rebind.so beside the binary (the
// test binary is alone in its directory), it is compiled from the source
// embedded in the binary into the user's cache directory.
func TestWrapRebindBuiltOnDemand(t *testing.T) {
	requireSocat(t)
	if _, err := os.Stat(filepath.Join(filepath.Dir(binPath), "rebind.so")); err == nil {
		t.Fatalf("rebind.so beside %s: this test needs it absent", binPath)
	}
	cache := t.TempDir()
	p := startWrapped(t, nil, []string{"XDG_CACHE_HOME=" + cache}, socatEcho(true))
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("built on demand"))
	built, _ := filepath.Glob(filepath.Join(cache, "websockify", "rebind-*.so"))
	if len(built) != 1 {
		t.Fatalf("rebind.so in the cache: %v", built)
	}
	// It is a shared object that defines bind.
	b, _ := os.ReadFile(built[0])
	if !bytes.HasPrefix(b, []byte("\x7fELF")) {
		t.Errorf("%s is not an ELF file", built[0])
	}
}

// TestWrapXvnc: TigerVNC's Xvnc wrapped as in the original's README
// (`websockify PORT -- Xvnc :N -rfbport PORT ...`): its RFB banner comes
// through the proxy, and Debian's noVNC in Chromium, served by the same
// websockify, shows its screen and types into it.
func TestWrapXvnc(t *testing.T) {
	requireFile(t, xvncPath, "Debian package tigervnc-standalone-server")
	requireFile(t, filepath.Join(debianNoVNC, "vnc_lite.html"), "Debian package novnc")
	browser, outDir := startChromium(t)
	x := &xvnc{display: ":" + strconv.Itoa(60+os.Getpid()%30), log: &lockedBuffer{}}
	p := startWrapped(t, []string{"--web", debianNoVNC}, nil, func(port int) []string {
		return []string{xvncPath, x.display, "-rfbport", strconv.Itoa(port), "-SecurityTypes", "None",
			"-nolisten", "tcp", "-AlwaysShared", "-geometry", fmt.Sprintf("%dx%d", screenW, screenH),
			"-depth", "24", "-desktop", "websockify-wrapped"}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := dialWSE(p, modeBinary, nil)
		if err == nil {
			got, err := c.readN(12)
			c.conn.Close()
			if err == nil && bytes.HasPrefix(got, []byte("RFB 003.")) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no RFB banner through websockify: %v\n%s", err, p.stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	x.setRoot(t, rootColour)
	x.startXterm(t)
	url := "http://127.0.0.1:" + strconv.Itoa(p.port) + "/vnc_lite.html?path=websockify"
	checkNoVNCSession(t, browser, outDir, "novnc_wrapped_xvnc.png", p, url)
}

// TestWrapWorkers: with --workers the parent starts and supervises the one
// program, and every worker proxies to it.
func TestWrapWorkers(t *testing.T) {
	requireSocat(t)
	p := startWrapped(t, []string{"--workers", "2"}, nil, socatEcho(true))
	for i := 0; i < 8; i++ {
		c := dialWS(t, p, modeBinary)
		mustEcho(t, c, []byte(fmt.Sprintf("worker session %d", i)))
		c.conn.Close()
	}
	socats := 0
	for _, pid := range childPIDs(t, p.pid()) {
		if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); strings.TrimSpace(string(comm)) == "socat" {
			socats++
		}
	}
	if socats != 1 {
		t.Errorf("%d socat programs under the parent, want 1", socats)
	}
	wport := wrappedPortOf(t, p)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if _, exited := p.waitExit(15 * time.Second); !exited {
		t.Fatal("websockify did not stop")
	}
	if c, err := net.Dial("tcp", "127.0.0.1:"+wport); err == nil {
		c.Close()
		t.Errorf("the program outlived websockify --workers")
	}
}

// TestWrapNeverListens: a program that never binds the port costs a clear
// warning within the start-up bound (10 s), not a silent hang; websockify
// then serves, and its clients are closed with 1011 until the program
// listens.
func TestWrapNeverListens(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	listen := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(binPath, listen, "--", "sleep", "60")
	p := &proxy{t: t, cmd: cmd, network: "tcp", addr: listen, port: port}
	if err := p.start(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	if !waitLog(p, "serving anyway", 20*time.Second) {
		t.Fatalf("no warning about the program not listening:\n%s", p.stderr.String())
	}
	deadline := time.Now().Add(5 * time.Second)
	var c *wsClient
	var err error
	for {
		if c, err = dialWSE(p, modeBinary, nil); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("websockify does not serve after the warning: %v", err)
	}
	defer c.conn.Close()
	code, _, _, err := c.expectClose()
	if err != nil || code != 1011 {
		t.Errorf("a client while nothing listens: close %d, %v; want 1011", code, err)
	}
}
