// Command websockify is a WebSocket-to-TCP proxy, a drop-in replacement for
// the noVNC project's websockify:
//
//	websockify [options] [source_addr:]source_port target_addr:target_port
//
// This file only turns the command line into an eventloop.Config and starts
// the server; see cli.go for the grammar.
package main

import (
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

func main() {
	// First, so that what this process starts is not taken for the daemon.
	daemonReady, daemonDir, isDaemon := service.TakeDaemonReady()
	opts, err := parseArgs(os.Args[1:], os.Stdout)
	if err != nil {
		if err == errHelpShown {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "websockify: %v\n%s", err, usageLines)
		os.Exit(2)
	}
	if isDaemon && daemonDir != "" {
		// Every path in opts is absolute by now (absPath).
		if err := os.Chdir(daemonDir); err != nil {
			daemonReady(err)
			os.Exit(1)
		}
	}
	cfg := opts.Config
	if opts.tokenPlugin != "" {
		cfg.Tokens, err = token.New(opts.tokenPlugin, opts.tokenSource, func(msg string) { cfg.Log.Infof("%s", msg) })
		if err != nil {
			fmt.Fprintf(os.Stderr, "websockify: --token-plugin %s: %v\n%s", opts.tokenPlugin, err, usageLines)
			os.Exit(2)
		}
		defer cfg.Tokens.Close()
	}
	// systemd socket activation: serve the sockets it passed.
	if inherited := eventloop.InheritedListeners(); inherited != nil && !workers.IsWorker() {
		if opts.workers > 1 {
			fmt.Fprintf(os.Stderr, "websockify: --workers cannot be combined with socket activation\n")
			os.Exit(2)
		}
		cfg.Listeners, cfg.ListenAddr = inherited, fmt.Sprintf("%d socket(s) from systemd", len(inherited))
	}

	if opts.daemon && !isDaemon {
		printBanner(cfg.Log, cfg, opts.workers, true, wrappedLabel(opts.wrapArgv, 0))
		cfg.Log.Close()
		dir := "/"
		if cfg.WebRoot != "" {
			dir = cfg.WebRoot
		}
		if err := service.Daemonize(dir); err != nil {
			fmt.Fprintf(os.Stderr, "websockify: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}

	// Once listening: the pid file, and systemd and a waiting parent told.
	ready := func() {
		if opts.pidFile != "" {
			if err := service.WritePidFile(opts.pidFile); err != nil {
				cfg.Log.Errorf("--pid-file: %v", err)
			}
		}
		if err := service.Notify("READY=1\nMAINPID=" + strconv.Itoa(os.Getpid())); err != nil {
			cfg.Log.Errorf("%v", err)
		}
		daemonReady(nil)
	}
	if opts.pidFile != "" {
		defer service.RemovePidFile(opts.pidFile)
	}

	// A wrapped program: this process supervises it (a worker only proxies
	// to it), and in exit mode its end is websockify's.
	var prog *wrap.Program
	var progStatus atomic.Int32
	progStatus.Store(-1)
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopServing := func() {
		stopOnce.Do(func() {
			_ = service.Notify("STOPPING=1")
			close(stop)
		})
	}
	wrapped := ""
	switch {
	case opts.wrapArgv != nil && workers.IsWorker():
		cfg.TargetNetwork, cfg.TargetAddr = "tcp", os.Getenv(wrapTargetEnv)
	case opts.wrapArgv != nil:
		prog, err = startWrapped(opts, cfg.Log)
		if err != nil {
			daemonReady(err)
			cfg.Log.Close()
			fmt.Fprintf(os.Stderr, "websockify: %v\n", err)
			os.Exit(1)
		}
		defer prog.Stop()
		cfg.TargetNetwork, cfg.TargetAddr = "tcp", prog.TargetAddr()
		wrapped = wrappedLabel(opts.wrapArgv, prog.Port())
		os.Setenv(wrapTargetEnv, cfg.TargetAddr) // for workers
		go func() {
			status, ok := <-prog.Exited()
			if !ok {
				return
			}
			progStatus.Store(int32(status))
			if opts.workers > 1 {
				_ = syscall.Kill(os.Getpid(), syscall.SIGTERM) // ends Supervise
			} else {
				stopServing()
			}
		}()
	}
	exitWithProgram := func() {
		if prog != nil {
			prog.Stop()
		}
		if st := progStatus.Load(); st >= 0 {
			os.Exit(int(st))
		}
	}

	switch {
	case workers.IsWorker():
		// The parent checked the address and shares the cores out.
		cfg.Worker = true
		cfg.RecordSlot, cfg.RecordSlots = workers.Slot()
		cfg.Loops = max(1, runtime.NumCPU()/opts.workers)
		cfg.Ready = workers.Ready
	case opts.workers > 1:
		if !isDaemon {
			printBanner(cfg.Log, cfg, opts.workers, false, wrapped)
		}
		err := eventloop.CheckAddressFree(cfg)
		if err == nil {
			err = workers.Supervise(opts.workers, cfg.Log, func(pids []int) error {
				if err := eventloop.CheckSoleListeners(cfg.ListenAddr, pids...); err != nil {
					return err
				}
				ready()
				return nil
			})
		}
		daemonReady(err)
		cfg.Log.Close()
		if opts.pidFile != "" {
			service.RemovePidFile(opts.pidFile)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "websockify: %v\n", err)
			if prog != nil {
				prog.Stop()
			}
			os.Exit(1)
		}
		exitWithProgram()
		return
	default:
		if !isDaemon {
			printBanner(cfg.Log, cfg, 1, false, wrapped)
		}
		cfg.Ready = ready
	}

	// Idle sessions are the proxy's bulk: with the hot path allocation-free,
	// the heap grows only when sessions are set up, so a lower GC target
	// trades a little set-up CPU for about a third less memory per session.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		cfg.Log.Infof("Got %v, shutting down", sig)
		stopServing()
	}()

	// SIGHUP reopens --log-file, so logrotate can move it away.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := cfg.Log.Reopen(); err != nil {
				cfg.Log.Infof("reopening the log file: %v", err)
			}
		}
	}()

	status := make(chan os.Signal, 1)
	signal.Notify(status, syscall.SIGUSR1)
	cfg.StatusRequests = status

	err = eventloop.Serve(cfg, stop)
	daemonReady(err) // if it never got as far as listening
	cfg.Log.Close()
	if opts.pidFile != "" {
		service.RemovePidFile(opts.pidFile)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "websockify: %v\n", err)
		if prog != nil {
			prog.Stop()
		}
		os.Exit(1)
	}
	exitWithProgram()
}

// wrapTargetEnv tells worker processes where the parent's wrapped program
// listens.
const wrapTargetEnv = "WEBSOCKIFY_WRAP_TARGET"

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
