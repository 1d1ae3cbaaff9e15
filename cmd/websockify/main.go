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
	"syscall"

	"github.com/gowebsockify/websockify/eventloop"
	"github.com/gowebsockify/websockify/service"
	"github.com/gowebsockify/websockify/token"
	"github.com/gowebsockify/websockify/workers"
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
	if opts.wrapArgv != nil {
		fmt.Fprintf(os.Stderr, "websockify: wrapping a program (-- PROGRAM) is not supported yet\n%s", usageLines)
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
		printBanner(cfg.Log, cfg, opts.workers, true)
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

	switch {
	case workers.IsWorker():
		// The parent checked the address and shares the cores out.
		cfg.Worker = true
		cfg.RecordSlot, cfg.RecordSlots = workers.Slot()
		cfg.Loops = max(1, runtime.NumCPU()/opts.workers)
		cfg.Ready = workers.Ready
	case opts.workers > 1:
		if !isDaemon {
			printBanner(cfg.Log, cfg, opts.workers, false)
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
			os.Exit(1)
		}
		return
	default:
		if !isDaemon {
			printBanner(cfg.Log, cfg, 1, false)
		}
		cfg.Ready = ready
	}

	// Idle sessions are the proxy's bulk: with the hot path allocation-free,
	// the heap grows only when sessions are set up, so a lower GC target
	// trades a little set-up CPU for about a third less memory per session.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}

	stop := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		cfg.Log.Infof("Got %v, shutting down", sig)
		_ = service.Notify("STOPPING=1")
		close(stop)
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
		os.Exit(1)
	}
}
