package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proxyProc is a proxy this tool started from a command template.
type proxyProc struct {
	cmd    *exec.Cmd
	listen string // host:port the proxy accepts on
	exited chan struct{}
	mu     sync.Mutex
	err    error // set when the process has exited
}

// expandProxyCmd fills a command template. Placeholders:
//
//	{listen}       127.0.0.1:PORT the proxy must accept on
//	{port}         PORT alone
//	{target}       127.0.0.1:TPORT of the target this tool runs
//	{target_host}  {target_port}  the two halves of {target}
//	{self}         this binary (for "{self} relay {listen} {target}")
func expandProxyCmd(tmpl, listen, target string) (string, error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	thost, tport, err := net.SplitHostPort(target)
	if err != nil {
		return "", err
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	r := strings.NewReplacer(
		"{listen}", listen,
		"{port}", port,
		"{target}", target,
		"{target_host}", thost,
		"{target_port}", tport,
		"{self}", self,
	)
	return r.Replace(tmpl), nil
}

// startProxy runs the expanded template through /bin/sh with "exec", so the
// shell's quoting works and the PID we hold is the proxy's own. The proxy gets
// its own process group: Python's websockify forks one child per connection,
// and stopping the group stops them all.
func startProxy(tmpl, target, logPath string) (*proxyProc, error) {
	// The free port is released before the proxy binds it, and on a machine
	// shared with other jobs someone else may take it first: a proxy that
	// exits before listening gets a new port, twice.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var p *proxyProc
		p, err = startProxyOnce(tmpl, target, logPath)
		if !errors.Is(err, errExitedEarly) {
			return p, err
		}
	}
	return nil, err
}

var errExitedEarly = errors.New("exited before listening")

func startProxyOnce(tmpl, target, logPath string) (*proxyProc, error) {
	listen, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	line, err := expandProxyCmd(tmpl, listen, target)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/bin/sh", "-c", "exec "+line)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if logPath == "" {
		logPath = os.DevNull
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %q: %w", line, err)
	}
	p := &proxyProc{cmd: cmd, listen: listen, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		if err == nil {
			err = errors.New("exited with status 0")
		}
		p.err = err
		p.mu.Unlock()
		close(p.exited)
	}()
	atCleanup(p.stop)
	if err := waitListening(listen, p.exited, 15*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("proxy %q: %w (log: %s)", line, err, logPath)
	}
	return p, nil
}

func (p *proxyProc) pid() int { return p.cmd.Process.Pid }

// alive reports nil while the proxy runs, else why it stopped.
func (p *proxyProc) alive() error {
	select {
	case <-p.exited:
		p.mu.Lock()
		defer p.mu.Unlock()
		return fmt.Errorf("proxy died: %v", p.err)
	default:
		return nil
	}
}

// stop sends SIGTERM to the proxy's process group, then SIGKILL if it is
// still there after three seconds. The group id is the proxy's PID: only
// processes this tool started are signalled.
func (p *proxyProc) stop() {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.exited:
		// The leader is gone; forked children may linger in the group.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return
	default:
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
	}
}

// waitListening polls with plain TCP connects until the address accepts.
func waitListening(addr string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-exited:
			return errExitedEarly
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %v: %v", addr, limit, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// freeLoopbackAddr asks the kernel for a free port on 127.0.0.1. The port is
// released before the proxy binds it; the race is harmless on a quiet machine.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

var (
	cleanupMu    sync.Mutex
	cleanupFuncs []func()
)

// atCleanup registers f to run at exit, on SIGINT/SIGTERM, and when the hard
// deadline fires, latest first, so no proxy or target outlives the tool.
func atCleanup(f func()) {
	cleanupMu.Lock()
	cleanupFuncs = append(cleanupFuncs, f)
	cleanupMu.Unlock()
}

func runCleanups() {
	cleanupMu.Lock()
	fs := cleanupFuncs
	cleanupFuncs = nil
	cleanupMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// armWatchdog makes the whole run bounded: past limit it cleans up and exits
// with status 3, whatever is still running. onExpire may print a partial
// result first.
func armWatchdog(limit time.Duration, onExpire func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "loadtest: %v, cleaning up\n", s)
			runCleanups()
			os.Exit(130)
		case <-time.After(limit):
			fmt.Fprintf(os.Stderr, "loadtest: hard deadline of %v reached, cleaning up\n", limit)
			if onExpire != nil {
				onExpire()
			}
			runCleanups()
			os.Exit(3)
		}
	}()
}
