package wrap

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Mode says what websockify does when the wrapped program ends
// (--wrap-mode).
type Mode int

const (
	// Exit: websockify exits with the program's status.
	Exit Mode = iota
	// Ignore: websockify keeps serving; for programs that daemonize, whose
	// children keep the port.
	Ignore
	// Respawn: websockify starts the program again, at most once every
	// RespawnInterval.
	Respawn
)

// ParseMode parses a --wrap-mode value: "exit", "ignore" or "respawn".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "exit":
		return Exit, nil
	case "ignore":
		return Ignore, nil
	case "respawn":
		return Respawn, nil
	}
	return 0, fmt.Errorf("invalid wrap mode %q: want exit, ignore or respawn", s)
}

func (m Mode) String() string {
	switch m {
	case Exit:
		return "exit"
	case Ignore:
		return "ignore"
	case Respawn:
		return "respawn"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// RespawnInterval is the least time between two starts in Respawn mode, so
// a program that dies at once restarts every 5 s instead of spinning. (The
// original allows three starts in 10 s, which comes to the same pace once
// its first burst of three is spent.)
const RespawnInterval = 5 * time.Second

// stopGrace is how long Stop lets the process group exit on SIGTERM before
// it sends SIGKILL.
const stopGrace = 3 * time.Second

// Config is what Start needs.
type Config struct {
	// Argv is the program and its arguments, Argv[0] looked up in $PATH.
	Argv []string
	// ListenPort is the port websockify listens on, which the program
	// would bind; rebind.so moves that bind to the loopback port Start
	// picks.
	ListenPort int
	Mode       Mode
	// Log receives the supervisor's lines (starts, exits, restarts); nil
	// discards them.
	Log func(format string, args ...any)
	// Rebind is the path of rebind.so (see FindRebind).
	Rebind string
}

// Program is a running wrapped program and the goroutine supervising it.
type Program struct {
	cfg     Config
	command string   // Argv joined, for log lines and errors
	env     []string // the program's environment
	port    int      // the loopback port its bind lands on

	exited   chan int      // Exit mode: the status, once
	ended    chan struct{} // closed when the program ended in Exit mode
	stopping chan struct{} // closed by Stop
	done     chan struct{} // closed when the supervisor returns
	stopOnce sync.Once

	mu         sync.Mutex
	stopped    bool   // set by Stop: no more starts
	pgid       int    // process group of the latest start
	exitStatus int    // the status ended reports
	target     string // see TargetAddr
}

// Start picks a free loopback port, then starts the program with rebind.so
// preloaded to move its bind of cfg.ListenPort there, and a goroutine to
// supervise it. It fails, starting nothing, when the program cannot be
// found or is one LD_PRELOAD cannot move (statically linked, a Go program,
// setuid or setgid to someone else, file capabilities), and when the first
// start fails.
func Start(cfg Config) (*Program, error) {
	if len(cfg.Argv) == 0 {
		return nil, errors.New("no program to wrap")
	}
	if cfg.ListenPort < 1 || cfg.ListenPort > 65535 {
		return nil, fmt.Errorf("wrapping a program needs a listen port, not %d", cfg.ListenPort)
	}
	if cfg.Mode < Exit || cfg.Mode > Respawn {
		return nil, fmt.Errorf("invalid wrap mode %d", cfg.Mode)
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	rebind, err := filepath.Abs(cfg.Rebind)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(rebind, ": \t\n") {
		// LD_PRELOAD splits its list at colons and white space.
		return nil, fmt.Errorf("rebind.so's path %q holds a colon or a space, which LD_PRELOAD cannot carry: put rebind.so beside the binary", rebind)
	}
	if _, err := os.Stat(rebind); err != nil {
		return nil, fmt.Errorf("rebind.so: %w", err)
	}
	if err := checkPreloadable(cfg.Argv[0], cfg.ListenPort); err != nil {
		return nil, err
	}
	port, err := pickLoopbackPort()
	if err != nil {
		return nil, err
	}
	p := &Program{
		cfg:      cfg,
		command:  strings.Join(cfg.Argv, " "),
		env:      childEnv(os.Environ(), rebind, cfg.ListenPort, port),
		port:     port,
		exited:   make(chan int, 1),
		ended:    make(chan struct{}),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
		target:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
	}
	firstStart := make(chan error)
	go p.supervise(firstStart)
	if err := <-firstStart; err != nil {
		<-p.done
		return nil, fmt.Errorf("starting '%s': %w", p.command, err)
	}
	return p, nil
}

// TargetAddr is the address to proxy to: "127.0.0.1:P", or "[::1]:P" once
// WaitListening has found the program listening only there (an IPv6-only
// socket, or one bound to ::1).
func (p *Program) TargetAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// Port is P, the loopback port the program's bind lands on.
func (p *Program) Port() int { return p.port }

// Exited delivers, in Exit mode, the status websockify should exit with
// once the program ends by itself (128+N for death by signal N). Nothing
// is delivered in the other modes, nor after Stop.
func (p *Program) Exited() <-chan int { return p.exited }

// Stop ends the supervision and the program's whole process group:
// SIGTERM, then SIGKILL for whatever is left after a short grace. It
// returns once the supervisor has. Members that left the group (a daemon
// calling setsid) are not reached, as with the original. Stop may be
// called more than once.
func (p *Program) Stop() {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.stopped = true
		pgid := p.pgid
		p.mu.Unlock()
		close(p.stopping)
		if pgid > 0 {
			stopGroup(pgid, stopGrace)
		}
	})
	<-p.done
}

// supervise starts the program, reports the first start's error on
// firstStart, and then waits for it and acts on its end by the mode until
// Stop.
func (p *Program) supervise(firstStart chan<- error) {
	defer close(p.done)
	// Pdeathsig (SIGKILL to the program if websockify dies) fires when the
	// OS thread that started the program ends, not the process: every start
	// happens on this locked thread, which ends only with this goroutine,
	// after Stop.
	runtime.LockOSThread()
	cmd, err := p.spawn()
	firstStart <- err
	if err != nil {
		return
	}
	lastStart := time.Now()
	for restarts := 1; ; restarts++ {
		status := waitStatus(cmd)
		p.cfg.Log("Wrapped command exited (or daemon). Returned %d", status)
		select {
		case <-p.stopping:
			return
		default:
		}
		switch p.cfg.Mode {
		case Exit:
			p.mu.Lock()
			p.exitStatus = status
			p.mu.Unlock()
			p.exited <- status
			close(p.ended)
			<-p.stopping
			return
		case Ignore:
			<-p.stopping
			return
		}
		for {
			if wait := time.Until(lastStart.Add(RespawnInterval)); wait > 0 {
				p.cfg.Log("Command respawning too fast: restarting in %.1f s", wait.Seconds())
				select {
				case <-time.After(wait):
				case <-p.stopping:
					return
				}
			}
			p.cfg.Log("Respawning wrapped command (restart %d)", restarts)
			lastStart = time.Now()
			cmd, err = p.spawn()
			if err == nil {
				break
			}
			if errors.Is(err, errStopped) {
				return
			}
			p.cfg.Log("Starting '%s' failed: %v", p.command, err)
		}
	}
}

var errStopped = errors.New("stopped")

// spawn starts the program in its own process group: a terminal's Ctrl-C
// reaches websockify alone, which then stops the group, and Stop reaches
// the program's children too. Its stdin is /dev/null (a background group
// reading the terminal would be stopped); stdout and stderr are
// websockify's.
func (p *Program) spawn() (*exec.Cmd, error) {
	cmd := exec.Command(p.cfg.Argv[0], p.cfg.Argv[1:]...)
	cmd.Env = p.env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Under mu so that Stop either sees this start's group or prevents it.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil, errStopped
	}
	p.cfg.Log("Starting '%s'", p.command)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.pgid = cmd.Process.Pid
	return cmd, nil
}

// waitStatus waits for cmd and returns its exit status as a shell reports
// it: 128+N for death by signal N.
func waitStatus(cmd *exec.Cmd) int {
	_ = cmd.Wait() // the status says it all
	if cmd.ProcessState == nil {
		return 1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

// stopGroup sends SIGTERM to process group pgid, waits up to grace for it
// to empty, then sends SIGKILL and waits a little more.
func stopGroup(pgid int, grace time.Duration) {
	if syscall.Kill(-pgid, syscall.SIGTERM) != nil {
		return // the group is gone already
	}
	if groupGone(pgid, grace) {
		return
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	groupGone(pgid, time.Second)
}

// groupGone polls until process group pgid has no live member, for up to
// timeout.
func groupGone(pgid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !groupAlive(pgid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// groupAlive tells whether process group pgid has a member that is not a
// zombie. kill(-pgid, 0) alone counts zombies too, and an orphan's zombie
// may wait long for a reaper that is slow or absent (in a container), so
// /proc is asked when kill says the group exists.
func groupAlive(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, entry := range entries {
		if entry.Name()[0] < '0' || entry.Name()[0] > '9' {
			continue
		}
		state, group, ok := procState(entry.Name())
		if ok && group == pgid && state != "Z" && state != "X" {
			return true
		}
	}
	return false
}

// procState reads a process's state letter and process group from
// /proc/PID/stat.
func procState(pid string) (state string, pgid int, ok bool) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", 0, false
	}
	// "pid (comm) state ppid pgrp ...": comm may hold spaces and parens.
	rest := string(data)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) < 3 {
		return "", 0, false
	}
	pgid, err = strconv.Atoi(fields[2])
	return fields[0], pgid, err == nil
}

// childEnv is base with rebind.so first in LD_PRELOAD (ahead of whatever
// was preloaded already) and the two ports it reads.
func childEnv(base []string, rebind string, oldPort, newPort int) []string {
	env := make([]string, 0, len(base)+3)
	preload := rebind
	for _, kv := range base {
		switch {
		case strings.HasPrefix(kv, "LD_PRELOAD="):
			if old := strings.TrimPrefix(kv, "LD_PRELOAD="); old != "" {
				preload += ":" + old
			}
		case strings.HasPrefix(kv, "REBIND_OLD_PORT="), strings.HasPrefix(kv, "REBIND_NEW_PORT="):
		default:
			env = append(env, kv)
		}
	}
	return append(env,
		"LD_PRELOAD="+preload,
		"REBIND_OLD_PORT="+strconv.Itoa(oldPort),
		"REBIND_NEW_PORT="+strconv.Itoa(newPort))
}
