// Command websockify is a WebSocket-to-TCP proxy, a drop-in replacement for
// the noVNC project's websockify:
//
//	websockify [options] [source_addr:]source_port target_addr:target_port
//
// This file only turns the command line into an eventloop.Config and starts
// the server; see cli.go for the grammar.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gowebsockify/websockify/eventloop"
	"github.com/gowebsockify/websockify/service"
	"github.com/gowebsockify/websockify/token"
	"github.com/gowebsockify/websockify/workers"
	"github.com/gowebsockify/websockify/wrap"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// A websockify process is one of: the command a user ran (serving here, or
// the parent of --workers), the daemon it detached (-D), or one worker.
// main sorts that out in steps: options, token plugin, detaching, the
// wrapped program, then serving; each step is a function below.
func main() {
	// First, so that what this process starts is not taken for the daemon.
	daemonReady, daemonDir, isDaemon := service.TakeDaemonReady()
	opts, err := parseArgs(os.Args[1:], os.Stdout)
	if err == errHelpShown {
		os.Exit(0)
	}
	if err != nil {
		exitUsage(err)
	}
	if isDaemon && daemonDir != "" {
		// Every path in opts is absolute by now (absPath).
		if err := os.Chdir(daemonDir); err != nil {
			daemonReady(err)
			os.Exit(1)
		}
	}
	p := &process{opts: opts, cfg: opts.Config, daemonReady: daemonReady, isDaemon: isDaemon, stop: make(chan struct{})}
	p.progStatus.Store(-1)
	if p.cfg.TLS != nil {
		p.certs, p.cfg.TLS = serveTLS(p.cfg.TLS, opts.tls) // swapped by SIGHUP (reload.go)
	}
	if opts.tokenPlugin != "" {
		p.cfg.Tokens, err = token.New(opts.tokenPlugin, opts.tokenSource, func(msg string) { p.cfg.Log.Infof("%s", msg) })
		if err != nil {
			exitUsage(fmt.Errorf("--token-plugin %s: %v", opts.tokenPlugin, err))
		}
		defer p.cfg.Tokens.Close()
	}
	// systemd socket activation: serve the sockets it passed.
	if inherited := service.ListenFDs(); inherited != nil && !workers.IsWorker() {
		if opts.workers > 1 {
			exitUsage(errors.New("--workers cannot be combined with socket activation"))
		}
		p.cfg.Listeners, p.cfg.ListenAddr = inherited, fmt.Sprintf("%d socket(s) from systemd", len(inherited))
	}
	if opts.daemon && !isDaemon && !workers.IsWorker() {
		p.detach() // does not return
	}
	if opts.wrapArgv != nil {
		p.startProgram()
	}
	stopMetrics, err := p.startMetrics()
	if err != nil {
		p.exitMetricsFailed(err)
	}

	var code int
	switch {
	case opts.workers > 1 && !workers.IsWorker():
		code = p.superviseWorkers()
	default:
		code = p.serve()
	}
	stopMetrics()
	if p.prog != nil {
		p.prog.Stop()
	}
	if opts.pidFile != "" {
		service.RemovePidFile(opts.pidFile)
	}
	if st := p.progStatus.Load(); code == 0 && st >= 0 {
		code = int(st) // exit mode: the program's status is websockify's
	}
	os.Exit(code)
}

// exitUsage prints a usage error and exits 2.
func exitUsage(err error) {
	fmt.Fprintf(os.Stderr, "websockify: %v\n%s", err, usageLines)
	os.Exit(2)
}

// process is what the steps of main share.
type process struct {
	opts        options
	cfg         eventloop.Config
	daemonReady func(error) // tells a waiting -D parent how start-up went
	isDaemon    bool

	prog       *wrap.Program // the wrapped program, when this process runs it
	progStatus atomic.Int32  // its exit status in exit mode, -1 until then
	wrapped    string        // its name in the banner

	certs *servedTLS // the served certificate, reloaded on SIGHUP; nil without TLS

	stop     chan struct{} // closed to stop serving
	stopOnce sync.Once
}

// detach prints the banner, starts the daemon and exits: 0 once it
// serves, 1 with its reason if it could not.
func (p *process) detach() {
	printBanner(p.cfg.Log, p.cfg, p.opts.workers, true, wrappedLabel(p.opts.wrapArgv, 0))
	p.cfg.Log.Close()
	dir := "/"
	if p.cfg.WebRoot != "" {
		dir = p.cfg.WebRoot
	}
	if err := service.Daemonize(dir); err != nil {
		fmt.Fprintf(os.Stderr, "websockify: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startProgram starts the program after -- (a worker only proxies to its
// parent's) and points the target at it. In exit mode its end stops
// websockify.
func (p *process) startProgram() {
	if workers.IsWorker() {
		p.cfg.TargetNetwork, p.cfg.TargetAddr = "tcp", os.Getenv(wrapTargetEnv)
		p.cfg.TargetLabel = os.Getenv(wrapLabelEnv)
		return
	}
	prog, err := startWrapped(p.opts, p.cfg.Log)
	if err != nil {
		p.daemonReady(err)
		p.cfg.Log.Close()
		fmt.Fprintf(os.Stderr, "websockify: %v\n", err)
		os.Exit(1)
	}
	p.prog = prog
	p.cfg.TargetNetwork, p.cfg.TargetAddr = "tcp", prog.TargetAddr()
	p.wrapped = wrappedLabel(p.opts.wrapArgv, prog.Port())
	p.cfg.TargetLabel = p.wrapped
	os.Setenv(wrapTargetEnv, p.cfg.TargetAddr) // for workers
	os.Setenv(wrapLabelEnv, p.wrapped)
	go func() {
		status, ok := <-prog.Exited()
		if !ok {
			return
		}
		p.progStatus.Store(int32(status))
		if p.opts.workers > 1 {
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM) // ends Supervise
		} else {
			p.stopServing()
		}
	}()
}

// ready runs once the process listens: the pid file, and systemd and a
// waiting -D parent told.
func (p *process) ready() {
	if p.opts.pidFile != "" {
		if err := service.WritePidFile(p.opts.pidFile); err != nil {
			p.cfg.Log.Errorf("--pid-file: %v", err)
		}
	}
	if err := service.Notify("READY=1\nMAINPID=" + strconv.Itoa(os.Getpid())); err != nil {
		p.cfg.Log.Errorf("%v", err)
	}
	p.daemonReady(nil)
}

func (p *process) stopServing() {
	p.stopOnce.Do(func() {
		_ = service.Notify("STOPPING=1")
		close(p.stop)
	})
}

// superviseWorkers runs --workers N: the parent checks the address, starts
// the workers and watches them until a signal. It returns the exit code.
func (p *process) superviseWorkers() int {
	cfg := p.cfg
	if !p.isDaemon {
		printBanner(cfg.Log, cfg, p.opts.workers, false, p.wrapped)
	}
	err := eventloop.CheckAddressFree(cfg)
	if err == nil {
		err = workers.Supervise(p.opts.workers, cfg.ShutdownTimeout, cfg.Log, func(pids []int) error {
			if err := eventloop.CheckSoleListeners(cfg.ListenAddr, pids...); err != nil {
				return err
			}
			p.ready()
			return nil
		})
	}
	p.daemonReady(err)
	cfg.Log.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "websockify: %v\n", err)
		return 1
	}
	return 0
}

// serve runs the proxy in this process (alone, or as one of the workers)
// until a signal, a timeout, --run-once or the wrapped program ends it. It
// returns the exit code.
func (p *process) serve() int {
	cfg := p.cfg
	if workers.IsWorker() {
		// The parent checked the address and shares the cores out.
		cfg.Worker = true
		cfg.RecordSlot, cfg.RecordSlots = workers.Slot()
		cfg.Loops = max(1, runtime.NumCPU()/p.opts.workers)
		cfg.Ready = workers.Ready
	} else {
		if !p.isDaemon {
			printBanner(cfg.Log, cfg, 1, false, p.wrapped)
		}
		cfg.Ready = p.ready
	}

	// Idle sessions are the proxy's bulk: with the hot path allocation-free,
	// the heap grows only when sessions are set up, so a lower GC target
	// trades a little set-up CPU for about a third less memory per session.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	// An event loop waits in epoll_wait holding a P, and the runtime gives
	// that P to other goroutines (dials, TLS handshakes, token lookups, the
	// log writer) only when its monitor takes it back, up to 10 ms later on
	// a quiet proxy. With a single P (one CPU, or a CPU quota of one) every
	// dial waits for that: keep a second P beside the loop.
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		cfg.Log.Infof("Got %v, shutting down", sig)
		p.stopServing()
	}()
	// SIGHUP reopens --log-file, so logrotate can move it away, then
	// reloads certificates and token files (reload.go).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := cfg.Log.Reopen(); err != nil {
				cfg.Log.Infof("reopening the log file: %v", err)
			}
			p.reloadOnHUP(cfg.Log)
		}
	}()
	status := make(chan os.Signal, 1)
	signal.Notify(status, syscall.SIGUSR1)
	cfg.StatusRequests = status

	err := eventloop.Serve(cfg, p.stop)
	p.daemonReady(err) // if it never got as far as listening
	cfg.Log.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "websockify: %v\n", err)
		return 1
	}
	return 0
}

// wrapTargetEnv tells worker processes where the parent's wrapped program
// listens.
const (
	wrapTargetEnv = "WEBSOCKIFY_WRAP_TARGET"
	wrapLabelEnv  = "WEBSOCKIFY_WRAP_LABEL" // and how log lines name it
)

// wrapListenWait is how long start-up waits for a wrapped program to listen
// before serving anyway (its clients then get 1011 until it does).
const wrapListenWait = 10 * time.Second

// startWrapped starts the program after --, its bind to the listen port
// moved to a loopback port by rebind.so, and waits until it listens there.
func startWrapped(opts options, log *eventloop.Logger) (*wrap.Program, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	rebind, err := wrap.FindRebind(exe)
	if err != nil {
		return nil, err
	}
	mode, _ := wrap.ParseMode(opts.wrapMode) // checked by parseArgs
	prog, err := wrap.Start(wrap.Config{
		Argv: opts.wrapArgv, ListenPort: opts.listenPort, Mode: mode, Rebind: rebind,
		Log: func(format string, args ...any) { log.Infof(format, args...) },
	})
	if err != nil {
		return nil, err
	}
	if err := prog.WaitListening(wrapListenWait); err != nil {
		select {
		case status, ok := <-prog.Exited():
			prog.Stop()
			if ok {
				return nil, fmt.Errorf("the wrapped program exited with status %d before it listened", status)
			}
		default:
		}
		log.Warnf("warning: %v; serving anyway", err)
	}
	return prog, nil
}

// wrappedLabel names a wrapped program as the original's banner does.
func wrappedLabel(argv []string, port int) string {
	if argv == nil {
		return ""
	}
	if port == 0 {
		return fmt.Sprintf("'%s'", strings.Join(argv, " "))
	}
	return fmt.Sprintf("'%s' (port %d)", strings.Join(argv, " "), port)
}
