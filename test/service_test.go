package test

import (
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

// Running as a service: -D with --pid-file, --inetd, and systemd socket
// activation with readiness notification, each reached by a real client.

// waitGone waits until pid no longer exists.
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); err != nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

func TestDaemon(t *testing.T) {
	echo := startEcho(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "websockify.pid")
	logFile := filepath.Join(dir, "websockify.log")
	port := freePort(t, "127.0.0.1")
	listen := "127.0.0.1:" + strconv.Itoa(port)
	// Relative paths are taken from the starting directory, before the
	// daemon changes to /.
	cmd := exec.Command(binPath, "-D", "--pid-file", "websockify.pid", "--log-file", "websockify.log", listen, echo.addr)
	cmd.Dir = dir
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("websockify -D: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("-D took %v to return", d)
	}
	if !strings.Contains(string(out), "Backgrounding (daemon)") {
		t.Errorf("the banner does not say it backgrounds:\n%s", out)
	}
	pid := readPid(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if pid == cmd.Process.Pid {
		t.Errorf("the pid file names the parent, which has exited")
	}
	// Detached: its own session, stdio on /dev/null, working directory /.
	stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:])); len(f) < 4 || f[3] != strconv.Itoa(pid) {
		t.Errorf("the daemon is not a session leader: %s", stat)
	}
	for _, fd := range []string{"0", "1", "2"} {
		if link, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd); link != "/dev/null" {
			t.Errorf("fd %s is %q, want /dev/null", fd, link)
		}
	}
	if cwd, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd"); cwd != "/" {
		t.Errorf("working directory %q, want /", cwd)
	}
	p := &proxy{t: t, network: "tcp", addr: listen, port: port}
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("daemon"))
	c.conn.Close()
	if !waitFileContains(t, logFile, "Plain non-SSL (ws://) WebSocket connection", 5*time.Second) {
		t.Errorf("the daemon's log file lacks the session")
	}

	// A second daemon on the same port: the parent reports why, exit 1.
	out, err = exec.Command(binPath, "-D", listen, echo.addr).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "address already in use") {
		t.Errorf("second daemon on a taken port: %v\n%s", err, out)
	}

	// Stopped through its pid file: exits, and removes the file.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !waitGone(pid, 10*time.Second) {
		t.Fatalf("the daemon did not stop on SIGTERM")
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file still there after exit: %v", err)
	}
}

// startWithListener runs websockify with extra environment and a listening
// socket at fd, as inetd or systemd-socket-activate pass one.
func listenerFile(t *testing.T) (*os.File, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // f keeps the socket listening
	t.Cleanup(func() { f.Close() })
	return f, addr
}

func TestInetd(t *testing.T) {
	echo := startEcho(t)
	f, addr := listenerFile(t)
	cmd := exec.Command(binPath, "--inetd", echo.addr)
	cmd.Stdin = f
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	p := &proxy{t: t, network: "tcp", addr: addr, port: port, stderr: &stderr}
	for i := 0; i < 3; i++ {
		c := dialWS(t, p, modeBinary)
		mustEcho(t, c, []byte("inetd"))
		c.conn.Close()
	}
	if !waitLog(p, "proxying from inetd to", 5*time.Second) {
		t.Errorf("banner: %s", stderr.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
}

// TestSocketActivation: systemd's own systemd-socket-activate binds the
// port and starts websockify with the socket on fd 3 (LISTEN_FDS); readiness
// and the stop are read from a real notify socket.
func TestSocketActivation(t *testing.T) {
	requireFile(t, "/usr/bin/systemd-socket-activate", "Debian package systemd")
	echo := startEcho(t)
	notifyPath := filepath.Join(shortTempDir(t), "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	port := freePort(t, "127.0.0.1")
	listen := "127.0.0.1:" + strconv.Itoa(port)
	// The listen positional is what a unit would say; the socket passed
	// wins.
	cmd := exec.Command("/usr/bin/systemd-socket-activate", "-l", listen,
		"-E", "NOTIFY_SOCKET="+notifyPath, binPath, "6080", echo.addr)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := &proxy{t: t, network: "tcp", addr: listen, port: port, stderr: &stderr}
	// systemd-socket-activate starts websockify at the first connection.
	deadline := time.Now().Add(10 * time.Second)
	var c *wsClient
	for {
		c, err = dialWSE(p, modeBinary, nil)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("through the activated socket: %v\n%s", err, stderr.String())
	}
	mustEcho(t, c, []byte("activated"))
	c.conn.Close()

	msg := readNotify(t, notify)
	if !strings.Contains(msg, "READY=1") {
		t.Errorf("first notification %q, want READY=1", msg)
	}
	if !waitLog(p, "socket(s) from systemd", 5*time.Second) {
		t.Errorf("banner does not say the socket came from systemd:\n%s", stderr.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM) // systemd-socket-activate execs websockify: same pid
	if msg := readNotify(t, notify); !strings.Contains(msg, "STOPPING=1") {
		t.Errorf("notification at stop %q, want STOPPING=1", msg)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

func readNotify(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("notify socket: %v", err)
	}
	return string(buf[:n])
}

// TestDaemonWorkers: -D with --workers detaches the parent, which starts
// its workers (they must not detach again); stopped through the pid file,
// all of them end.
func TestDaemonWorkers(t *testing.T) {
	echo := startEcho(t)
	pidFile := filepath.Join(t.TempDir(), "websockify.pid")
	port := freePort(t, "127.0.0.1")
	listen := "127.0.0.1:" + strconv.Itoa(port)
	out, err := exec.Command(binPath, "-D", "--workers", "2", "--pid-file", pidFile, listen, echo.addr).CombinedOutput()
	if err != nil {
		t.Fatalf("websockify -D --workers 2: %v\n%s", err, out)
	}
	pid := readPid(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	kids := childPIDs(t, pid)
	if len(kids) != 2 {
		t.Errorf("the daemon has %d children, want its 2 workers", len(kids))
	}
	p := &proxy{t: t, network: "tcp", addr: listen, port: port}
	for i := 0; i < 4; i++ {
		c := dialWS(t, p, modeBinary)
		mustEcho(t, c, []byte("daemon worker"))
		c.conn.Close()
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for _, k := range append(kids, pid) {
		if !waitGone(k, 10*time.Second) {
			t.Errorf("process %d still there after SIGTERM", k)
		}
	}
}
