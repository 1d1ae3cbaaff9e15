package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer collects a child's output; safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ---- ports ----

// Ports handed out by freePort are never handed out again in this process:
// websockify listens with SO_REUSEPORT, so two proxies given the same port
// would both bind it and share its clients.
var (
	portMu    sync.Mutex
	usedPorts = map[int]bool{}
)

// freePort returns a TCP port that was free on host a moment ago.
func freePort(t testing.TB, host string) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("freePort: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portMu.Lock()
		used := usedPorts[port]
		usedPorts[port] = true
		portMu.Unlock()
		if !used {
			return port
		}
	}
	t.Fatalf("freePort: no fresh port found")
	return 0
}

// closedPort returns host:port of a TCP socket that is bound but does not
// listen: connecting to it is refused, and nobody else can take the port
// while the test runs.
func closedPort(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
}

// ---- the proxy process ----

// proxyConfig describes one websockify process.
type proxyConfig struct {
	// Host is the host part of the listen positional ("127.0.0.1" when
	// empty; use "-" for no host at all, i.e. listen on all addresses).
	Host string
	// Args are all other arguments: options and the target positional.
	// The listen positional is put in front of them.
	Args []string
	// UnixListen, when set, makes the proxy listen on this unix socket.
	UnixListen string
	// Ulimit, when > 0, runs the proxy under `ulimit -n Ulimit`.
	Ulimit int
	// Env is added to the proxy's environment.
	Env []string
}

// proxy is a running websockify.
type proxy struct {
	t       testing.TB
	cmd     *exec.Cmd
	network string // "tcp" or "unix"
	addr    string // where clients connect
	port    int
	stderr  *lockedBuffer
	stdout  *lockedBuffer
	done    chan struct{} // closed when the process has exited
	state   *os.ProcessState
}

// startProxy starts websockify proxying to target with extra options.
func startProxy(t testing.TB, target string, opts ...string) *proxy {
	t.Helper()
	return launchProxy(t, proxyConfig{Args: append(append([]string{}, opts...), target)})
}

// launchProxy starts websockify on a fresh port and waits until it accepts
// connections. It is killed when the test ends; its output is logged if the
// test failed.
func launchProxy(t testing.TB, cfg proxyConfig) *proxy {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		p, err := tryLaunch(t, cfg)
		if err == nil {
			return p
		}
		lastErr = err
		if cfg.UnixListen != "" {
			break // no port to retry with
		}
	}
	t.Fatalf("websockify did not start: %v", lastErr)
	return nil
}

func tryLaunch(t testing.TB, cfg proxyConfig) (*proxy, error) {
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	dialHost := host
	portHost := host
	if host == "-" {
		dialHost, portHost = "127.0.0.1", "127.0.0.1"
	}
	port := freePort(t, portHost)
	listen := strconv.Itoa(port)
	if host != "-" {
		listen = net.JoinHostPort(host, listen)
	}
	args := []string{listen}
	if cfg.UnixListen != "" {
		args = append(args, "--unix-listen", cfg.UnixListen)
	}
	args = append(args, cfg.Args...)

	network, addr := "tcp", net.JoinHostPort(dialHost, strconv.Itoa(port))
	if cfg.UnixListen != "" {
		network, addr = "unix", cfg.UnixListen
	}
	return startProcessEnv(t, args, cfg.Ulimit, cfg.Env, network, addr, port)
}

// startProcess runs websockify with args (under `ulimit -n` when ulimit > 0)
// and waits until network/addr accepts connections.
func startProcess(t testing.TB, args []string, ulimit int, network, addr string, port int) (*proxy, error) {
	return startProcessEnv(t, args, ulimit, nil, network, addr, port)
}

// startProcessEnv is startProcess with env added to the environment.
func startProcessEnv(t testing.TB, args []string, ulimit int, env []string, network, addr string, port int) (*proxy, error) {
	var cmd *exec.Cmd
	if ulimit > 0 {
		script := fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, ulimit)
		cmd = exec.Command("bash", append([]string{"-c", script, binPath}, args...)...)
	} else {
		cmd = exec.Command(binPath, args...)
	}
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	p := &proxy{t: t, cmd: cmd, port: port, network: network, addr: addr}
	if err := p.start(nil); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("websockify %s: stderr:\n%s", strings.Join(args, " "), truncate(p.stderr.String(), 20000))
			if out := p.stdout.String(); out != "" {
				t.Logf("websockify stdout:\n%s", truncate(out, 4000))
			}
		}
	})

	var firstAnswer time.Time
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return p, fmt.Errorf("exited early (%v): %s", p.state, p.stderr.String())
		default:
		}
		c, err := net.DialTimeout(p.network, p.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			// Another process may have taken the port since freePort
			// chose it: then this one fails to bind and exits, and the
			// connection reached the other.
			// A process whose listeners are its children's (--workers)
			// counts once it has lived 300 ms past the first answer:
			// a failed bind exits sooner.
			if firstAnswer.IsZero() {
				firstAnswer = time.Now()
			}
			if p.network != "tcp" || listensOn(p.pid(), port) || time.Since(firstAnswer) > 300*time.Millisecond {
				return p, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.kill()
	return nil, fmt.Errorf("not accepting on %s after 10s; stderr: %s", p.addr, p.stderr.String())
}

// listensOn reports whether process pid holds a TCP socket listening on
// port (any address): /proc/net/tcp{,6} name the listening sockets' inodes,
// /proc/PID/fd the process's.
func listensOn(pid, port int) bool {
	own := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			own[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			i := strings.LastIndexByte(f[1], ':')
			if p, err := strconv.ParseUint(f[1][i+1:], 16, 16); err == nil && int(p) == port && own[f[9]] {
				return true
			}
		}
	}
	return false
}

// start runs p.cmd with its output kept in p.stdout and p.stderr, and
// closes p.done when it exits; onStderr, if set, sees the error output so
// far each time more arrives (on the goroutine copying it).
func (p *proxy) start(onStderr func(string)) error {
	p.stderr, p.stdout, p.done = &lockedBuffer{}, &lockedBuffer{}, make(chan struct{})
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if onStderr != nil {
		p.cmd.Stderr = writerFunc(func(b []byte) (int, error) {
			n, err := p.stderr.Write(b)
			onStderr(p.stderr.String())
			return n, err
		})
	}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n/2] + "\n[...]\n" + s[len(s)-n/2:]
}

// kill ends the process (if it still runs) and waits for it.
func (p *proxy) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	// SIGTERM first: the proxy then flushes its buffered log lines, which
	// the failure report shows. SIGKILL if it does not go within a second.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// running reports whether the process has not exited.
func (p *proxy) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitExit waits up to d for the process to exit and returns its exit code.
func (p *proxy) waitExit(d time.Duration) (int, bool) {
	select {
	case <-p.done:
		return p.state.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// pid is the process id (the binary itself also under the ulimit wrapper,
// which execs it).
func (p *proxy) pid() int { return p.cmd.Process.Pid }

// dial opens a raw connection to the proxy.
func (p *proxy) dial() (net.Conn, error) {
	return net.DialTimeout(p.network, p.addr, 5*time.Second)
}

// ---- one-shot command lines ----

type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs websockify with args and waits (at most timeout) for it to exit.
func runCLI(t testing.TB, timeout time.Duration, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("websockify %q did not exit within %v; stderr:\n%s", args, timeout, errb.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("websockify %q: %v", args, err)
	}
	return cliResult{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

// vmRSS reads VmRSS of pid in bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// SIGUSR1 logs one status line with the open sessions, goroutines and
// descriptors: what a soak run compares before and after.
func TestStatusOnSIGUSR1(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.addr)
	c := dialWS(t, p, "binary")
	if err := c.echo([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if !waitLog(p, "status: sessions=1 goroutines=", 5*time.Second) {
		t.Fatalf("no status line with one session; log:\n%s", p.stderr.String())
	}
	if !regexp.MustCompile(`status: sessions=1 goroutines=\d+ fds=\d+`).MatchString(p.stderr.String()) {
		t.Fatalf("status line malformed; log:\n%s", p.stderr.String())
	}
	if !p.running() {
		t.Fatal("SIGUSR1 stopped the proxy")
	}
}
