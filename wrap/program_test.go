package wrap

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// logLines records a Program's log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Log(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logLines) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// freePort returns a port nothing listens on, to stand for websockify's.
func freePort(t *testing.T) int {
	t.Helper()
	port, err := pickLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// startWrapped starts argv wrapped around listenPort, stopped at the end
// of the test.
func startWrapped(t *testing.T, mode Mode, listenPort int, argv ...string) (*Program, *logLines) {
	t.Helper()
	log := &logLines{}
	p, err := Start(Config{Argv: argv, ListenPort: listenPort, Mode: mode, Log: log.Log, Rebind: rebindPath})
	if err != nil {
		t.Fatal(err)
	}
	movedPorts.Store(p.Port(), true)
	t.Cleanup(func() { p.Stop(); movedPorts.Delete(p.Port()) })
	return p, log
}

// movedPorts holds the loopback ports the running wrapped programs were
// moved to. Listen ports and moved ports both come from ports the kernel
// just handed out and took back, so with subtests in parallel one
// program's moved port can be another's listen port.
var movedPorts sync.Map // int → true

// echo sends a line to addr and wants it back.
func echo(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	want := "hello through " + addr + "\n"
	if _, err := io.WriteString(conn, want); err != nil {
		return err
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("reading the echo from %s: %w", addr, err)
	}
	if string(got) != want {
		return fmt.Errorf("echo from %s: %q, want %q", addr, got, want)
	}
	return nil
}

// wantRefused checks that nothing listens on port on either loopback.
func wantRefused(t *testing.T, port int) {
	t.Helper()
	if _, taken := movedPorts.Load(port); taken {
		t.Logf("port %d is also a wrapped program's moved port: whether its own program bound it cannot be told by connecting", port)
		return
	}
	for _, host := range []string{"127.0.0.1", "::1"} {
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			conn.Close()
			t.Errorf("%s accepts a connection: the program's bind was not moved", addr)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("connecting to %s: %v, want connection refused", addr, err)
		}
	}
}

// checkMoved waits for p to listen, then checks that TargetAddr is want
// ("127.0.0.1" or "::1" at p's port), that it echoes there, and that
// nothing listens on the original port.
func checkMoved(t *testing.T, p *Program, log *logLines, listenPort int, wantHost string) {
	t.Helper()
	if err := p.WaitListening(10 * time.Second); err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log)
	}
	want := net.JoinHostPort(wantHost, strconv.Itoa(p.Port()))
	if got := p.TargetAddr(); got != want {
		t.Errorf("TargetAddr = %s, want %s", got, want)
	}
	if err := echo(p.TargetAddr()); err != nil {
		t.Error(err)
	}
	wantRefused(t, listenPort)
}

func TestSocatIsMoved(t *testing.T) {
	if _, err := exec.LookPath("socat"); err != nil {
		t.Skip("socat not installed")
	}
	for _, tc := range []struct {
		name, listen, wantHost string
	}{
		{"ipv4 any", "TCP4-LISTEN:%d,reuseaddr,fork", "127.0.0.1"},
		{"ipv4 other address", "TCP4-LISTEN:%d,reuseaddr,fork,bind=192.0.2.1", "127.0.0.1"},
		{"ipv6 any, dual stack", "TCP6-LISTEN:%d,reuseaddr,fork,ipv6only=0", "127.0.0.1"},
		{"ipv6 any, default v6only", "TCP6-LISTEN:%d,reuseaddr,fork", "127.0.0.1"},
		{"ipv6 any, ipv6only", "TCP6-LISTEN:%d,reuseaddr,fork,ipv6only=1", "::1"},
		{"ipv6 loopback", "TCP6-LISTEN:%d,reuseaddr,fork,bind=[::1]", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			listenPort := freePort(t)
			p, log := startWrapped(t, Exit, listenPort, "socat", fmt.Sprintf(tc.listen, listenPort), "EXEC:cat")
			checkMoved(t, p, log, listenPort, tc.wantHost)
		})
	}
}

// pythonEcho is an echo server binding (host, port) on an IPv6 socket,
// IPV6_V6ONLY set as asked; with also_ipv4 it binds 0.0.0.0 too, like a
// dual-stack server looping over getaddrinfo.
const pythonEcho = `
import select, socket, sys
host, port, v6only, also_ipv4 = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1"
listeners = []
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
s.bind((host, port))
s.listen()
listeners.append(s)
if also_ipv4:
    s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s4.bind(("0.0.0.0", port))
    s4.listen()
    listeners.append(s4)
while True:
    ready, _, _ = select.select(listeners, [], [])
    for l in ready:
        c, _ = l.accept()
        buf = b""
        while not buf.endswith(b"\n"):
            data = c.recv(4096)
            if not data:
                break
            buf += data
        c.sendall(buf)
        c.close()
`

func TestPythonIPv6IsMoved(t *testing.T) {
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("no " + python)
	}
	for _, tc := range []struct {
		name, host, v6only, alsoIPv4, wantHost string
	}{
		{"any", "::", "0", "0", "127.0.0.1"},
		{"loopback", "::1", "0", "0", "::1"},
		{"any, v6only", "::", "1", "0", "::1"},
		{"any, v6only, and 0.0.0.0", "::", "1", "1", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			listenPort := freePort(t)
			p, log := startWrapped(t, Exit, listenPort, python, "-c", pythonEcho, tc.host, strconv.Itoa(listenPort), tc.v6only, tc.alsoIPv4)
			checkMoved(t, p, log, listenPort, tc.wantHost)
			if tc.alsoIPv4 == "1" {
				// Its IPv6 socket, kept IPv6-only, went to ::1.
				if err := echo(net.JoinHostPort("::1", strconv.Itoa(p.Port()))); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestChildOfTheProgramIsMoved(t *testing.T) {
	t.Parallel()
	listenPort := freePort(t)
	// "; true" keeps sh from exec'ing socat in its own place.
	p, log := startWrapped(t, Exit, listenPort, "sh", "-c",
		fmt.Sprintf("socat TCP-LISTEN:%d,reuseaddr,fork EXEC:cat; true", listenPort))
	checkMoved(t, p, log, listenPort, "127.0.0.1")
}

func TestOtherPortsAreNotMoved(t *testing.T) {
	t.Parallel()
	listenPort, otherPort := freePort(t), freePort(t)
	p, _ := startWrapped(t, Exit, listenPort, "socat", fmt.Sprintf("TCP4-LISTEN:%d,reuseaddr,fork", otherPort), "EXEC:cat")
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = echo(net.JoinHostPort("127.0.0.1", strconv.Itoa(otherPort))); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("a bind of another port was disturbed: %v", err)
	}
	if err := p.WaitListening(300 * time.Millisecond); err == nil {
		t.Error("WaitListening found a listener on the moved-to port")
	}
}

func TestExitModeDeliversTheStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 7", 7},
		{"kill -TERM $$", 128 + int(syscall.SIGTERM)},
	} {
		p, log := startWrapped(t, Exit, freePort(t), "sh", "-c", tc.script)
		select {
		case got := <-p.Exited():
			if got != tc.want {
				t.Errorf("%q: Exited delivered %d, want %d", tc.script, got, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: nothing on Exited after 10 s", tc.script)
		}
		if log.count("Starting 'sh -c "+tc.script+"'") != 1 || log.count(fmt.Sprintf("Wrapped command exited (or daemon). Returned %d", tc.want)) != 1 {
			t.Errorf("log:\n%s", log)
		}
	}
}

func TestIgnoreModeKeepsGoing(t *testing.T) {
	t.Parallel()
	p, log := startWrapped(t, Ignore, freePort(t), "sh", "-c", "exit 3")
	select {
	case status := <-p.Exited():
		t.Fatalf("Exited delivered %d in ignore mode", status)
	case <-time.After(2 * time.Second):
	}
	if log.count("Wrapped command exited (or daemon). Returned 3") != 1 || log.count("Starting") != 1 {
		t.Errorf("want one start and its exit logged, got:\n%s", log)
	}
	done := make(chan struct{})
	go func() { p.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop hangs after the program ended in ignore mode")
	}
}

func TestRespawnIsRateLimited(t *testing.T) {
	t.Parallel()
	starts := filepath.Join(t.TempDir(), "starts")
	p, log := startWrapped(t, Respawn, freePort(t), "sh", "-c", "echo start >> "+starts)
	time.Sleep(12 * time.Second)
	p.Stop()
	data, _ := os.ReadFile(starts)
	runs := strings.Count(string(data), "start\n")
	// At 0, 5 and 10 s; a tight loop would run hundreds of times.
	if runs < 3 || runs > 4 {
		t.Errorf("%d runs in 12 s, want 3 (one every 5 s)\nlog:\n%s", runs, log)
	}
	if log.count("Starting '") != runs || log.count("Respawning wrapped command") != runs-1 {
		t.Errorf("%d runs; want each start and each restart logged:\n%s", runs, log)
	}
	select {
	case status := <-p.Exited():
		t.Errorf("Exited delivered %d in respawn mode", status)
	default:
	}
}

func TestRespawnAfterALongRunIsImmediate(t *testing.T) {
	t.Parallel()
	starts := filepath.Join(t.TempDir(), "starts")
	p, _ := startWrapped(t, Respawn, freePort(t), "sh", "-c", "echo start >> "+starts+"; sleep 6")
	time.Sleep(7 * time.Second)
	p.Stop()
	data, _ := os.ReadFile(starts)
	if runs := strings.Count(string(data), "start\n"); runs != 2 {
		t.Errorf("%d runs in 7 s of a program that lives 6 s, want 2 (restarted at once)", runs)
	}
}

// alive tells whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	state, _, ok := procState(strconv.Itoa(pid))
	return ok && state != "Z" && state != "X"
}

// readPid waits for a program to write a pid into path.
func readPid(t *testing.T, path string) int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(path)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && strings.HasSuffix(string(data), "\n") {
			return pid
		}
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

func TestStopKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, script string
		slowest      time.Duration
	}{
		{"on SIGTERM", "sleep 1000 & echo $! > %s; wait", stopGrace},
		// The grandchild inherits the ignored SIGTERM: SIGKILL after the grace.
		{"SIGTERM ignored", "trap '' TERM; sleep 1000 & echo $! > %s; wait; wait; wait", stopGrace + 2*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pidFile := filepath.Join(t.TempDir(), "pid")
			p, _ := startWrapped(t, Exit, freePort(t), "sh", "-c", fmt.Sprintf(tc.script, pidFile))
			sleepPid := readPid(t, pidFile)
			if !alive(sleepPid) {
				t.Fatal("the grandchild is not running")
			}
			began := time.Now()
			p.Stop()
			if took := time.Since(began); took > tc.slowest {
				t.Errorf("Stop took %v", took)
			}
			if alive(sleepPid) {
				t.Errorf("grandchild %d still runs after Stop", sleepPid)
				syscall.Kill(sleepPid, syscall.SIGKILL)
			}
			select {
			case status := <-p.Exited():
				t.Errorf("Exited delivered %d after Stop", status)
			default:
			}
		})
	}
}

// TestProgramDiesWithWebsockify kills a process that wraps a program
// (this test binary, run as a helper) with SIGKILL and wants the program
// gone too: Pdeathsig.
func TestProgramDiesWithWebsockify(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperWrapper$")
	helper.Env = append(os.Environ(), "WRAP_TEST_HELPER_PIDFILE="+pidFile)
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	programPid := readPid(t, pidFile)
	if !alive(programPid) {
		t.Fatal("the wrapped program is not running")
	}
	helper.Process.Kill()
	helper.Wait()
	for deadline := time.Now().Add(5 * time.Second); alive(programPid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(programPid, syscall.SIGKILL)
			t.Fatalf("wrapped program %d outlived websockify", programPid)
		}
	}
}

// TestHelperWrapper is TestProgramDiesWithWebsockify's websockify: it
// wraps a program that writes its pid, then waits to be killed.
func TestHelperWrapper(t *testing.T) {
	pidFile := os.Getenv("WRAP_TEST_HELPER_PIDFILE")
	if pidFile == "" {
		t.Skip("a helper for TestProgramDiesWithWebsockify")
	}
	startWrapped(t, Exit, freePort(t), "sh", "-c", fmt.Sprintf("echo $$ > %s; exec sleep 1000", pidFile))
	time.Sleep(time.Minute)
}

func TestNeverListening(t *testing.T) {
	t.Parallel()
	p, _ := startWrapped(t, Exit, freePort(t), "sleep", "1000")
	began := time.Now()
	err := p.WaitListening(time.Second)
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("WaitListening(1s) took %v", took)
	}
	if err == nil || !strings.Contains(err.Error(), "is not listening on 127.0.0.1:") {
		t.Fatalf("WaitListening: %v, want a timeout saying where it looked", err)
	}
	t.Log(err)
}

func TestExitBeforeListening(t *testing.T) {
	t.Parallel()
	p, _ := startWrapped(t, Exit, freePort(t), "sh", "-c", "sleep 0.2; exit 2")
	began := time.Now()
	err := p.WaitListening(20 * time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited with status 2 before listening") {
		t.Fatalf("WaitListening: %v, want the early exit", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("WaitListening took %v to see the exit", took)
	}
	if status := <-p.Exited(); status != 2 {
		t.Errorf("Exited delivered %d, want 2", status)
	}
}

func TestWaitListeningWithoutProc(t *testing.T) {
	saved := procNet
	procNet = filepath.Join(t.TempDir(), "none")
	defer func() { procNet = saved }()
	listenPort := freePort(t)
	p, log := startWrapped(t, Exit, listenPort, "socat", fmt.Sprintf("TCP6-LISTEN:%d,reuseaddr,fork,bind=[::1]", listenPort), "EXEC:cat")
	checkMoved(t, p, log, listenPort, "::1")
}

func TestStartFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no program", Config{ListenPort: 5900, Rebind: rebindPath}, "no program"},
		{"no port", Config{Argv: []string{"true"}, Rebind: rebindPath}, "listen port"},
		{"missing program", Config{Argv: []string{"no-such-program-here"}, ListenPort: 5900, Rebind: rebindPath}, "not found"},
		{"missing rebind", Config{Argv: []string{"true"}, ListenPort: 5900, Rebind: "/nonexistent/rebind.so"}, "rebind.so"},
		{"rebind path with a colon", Config{Argv: []string{"true"}, ListenPort: 5900, Rebind: "/tmp/a:b/rebind.so"}, "LD_PRELOAD cannot carry"},
	} {
		if _, err := Start(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Start: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

func TestChildEnv(t *testing.T) {
	base := []string{"PATH=/bin", "LD_PRELOAD=/x/other.so", "REBIND_OLD_PORT=1", "HOME=/h"}
	got := strings.Join(childEnv(base, "/r/rebind.so", 5900, 40000), " ")
	want := "PATH=/bin HOME=/h LD_PRELOAD=/r/rebind.so:/x/other.so REBIND_OLD_PORT=5900 REBIND_NEW_PORT=40000"
	if got != want {
		t.Errorf("childEnv = %s\nwant %s", got, want)
	}
	got = strings.Join(childEnv([]string{"LD_PRELOAD="}, "/r/rebind.so", 1, 2), " ")
	if want := "LD_PRELOAD=/r/rebind.so REBIND_OLD_PORT=1 REBIND_NEW_PORT=2"; got != want {
		t.Errorf("childEnv = %s\nwant %s", got, want)
	}
}

func TestParseMode(t *testing.T) {
	for s, want := range map[string]Mode{"exit": Exit, "ignore": Ignore, "respawn": Respawn} {
		if got, err := ParseMode(s); err != nil || got != want || got.String() != s {
			t.Errorf("ParseMode(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseMode("restart"); err == nil {
		t.Error("ParseMode accepted restart")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
