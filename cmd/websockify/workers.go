package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/gowebsockify/websockify/eventloop"
)

// With --workers N, websockify starts N copies of itself that each bind the
// listening port with SO_REUSEPORT, so the kernel spreads new clients over
// them. Each worker is a whole proxy with its own event loops and its own
// open-file limit: one process can hold about RLIMIT_NOFILE/2 sessions, and
// workers are how one machine holds more. The parent only supervises: it
// checks the address once, starts the workers, makes sure nobody else
// listens on the port, forwards signals, and replaces a worker that dies.

// workerEnv marks a process as one of the workers of the parent that set it.
const workerEnv = "WEBSOCKIFY_WORKER"

// readyFD is the descriptor on which a worker reports that it is listening:
// the write end of a pipe from the parent (exec.Cmd.ExtraFiles[0]).
const readyFD = 3

// workerStartLimit bounds how long a worker may take to bind its listeners.
const workerStartLimit = 10 * time.Second

// isWorker reports whether this process was started by superviseWorkers.
func isWorker() bool { return os.Getenv(workerEnv) != "" }

// setUpWorker adapts a worker's Config: its parent already checked the
// address, the machine's cores are shared among the workers, and the parent
// learns from the ready pipe when the listeners are bound.
func setUpWorker(cfg *eventloop.Config, workers int) {
	cfg.Worker = true
	cfg.Loops = max(1, runtime.NumCPU()/workers)
	ready := os.NewFile(readyFD, "ready")
	cfg.Ready = func() {
		_, _ = ready.Write([]byte{1})
		_ = ready.Close()
	}
}

// worker is one running worker process.
type worker struct {
	slot  int
	cmd   *exec.Cmd
	ready chan struct{} // closed when it reports its listeners bound
}

type workerExit struct {
	w   *worker
	err error
}

// superviseWorkers runs n workers until a signal stops them. It returns an
// error when they cannot start or the address is not theirs alone.
func superviseWorkers(cfg eventloop.Config, n int) error {
	log := cfg.Log
	if err := eventloop.CheckAddressFree(cfg); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	exits := make(chan workerExit, n)
	running := make([]*worker, n)
	live := 0

	stopAll := func(sig os.Signal) {
		for _, w := range running {
			if w != nil {
				_ = w.cmd.Process.Signal(sig)
			}
		}
	}
	// waitAll waits for every running worker to exit.
	waitAll := func() {
		for live > 0 {
			ex := <-exits
			running[ex.w.slot] = nil
			live--
		}
	}
	fail := func(err error) error {
		stopAll(syscall.SIGTERM)
		waitAll()
		return err
	}

	for slot := range n {
		w, err := startWorker(slot, exits)
		if err != nil {
			return fail(err)
		}
		running[slot] = w
		live++
	}
	deadline := time.After(workerStartLimit)
	for _, w := range running {
		select {
		case <-w.ready:
		case ex := <-exits:
			running[ex.w.slot] = nil
			live--
			return fail(fmt.Errorf("worker %d exited while starting: %v", ex.w.cmd.Process.Pid, ex.err))
		case <-deadline:
			return fail(fmt.Errorf("workers did not start listening within %v", workerStartLimit))
		}
	}
	pids := make([]int, 0, n)
	for _, w := range running {
		pids = append(pids, w.cmd.Process.Pid)
	}
	if err := eventloop.CheckSoleListeners(cfg.ListenAddr, pids...); err != nil {
		return fail(err)
	}
	log.Infof("%d workers listening: pids %v", n, pids)
	log.Flush()

	lastStart := make([]time.Time, n)
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGUSR1 {
				stopAll(sig) // each worker logs its own status line
				continue
			}
			log.Infof("Got %v, shutting down %d workers", sig, live)
			log.Flush()
			stopAll(syscall.SIGTERM)
			waitAll()
			return nil
		case ex := <-exits:
			running[ex.w.slot] = nil
			live--
			// A worker only exits on its own when something is wrong; its
			// sessions are gone, but the others' are not. Replace it, unless
			// its slot keeps failing.
			log.Infof("worker %d exited: %v", ex.w.cmd.Process.Pid, ex.err)
			if time.Since(lastStart[ex.w.slot]) < 5*time.Second && !lastStart[ex.w.slot].IsZero() {
				log.Flush()
				return fail(errors.New("a replaced worker exited again within 5s; giving up"))
			}
			w, err := startWorker(ex.w.slot, exits)
			if err != nil {
				log.Flush()
				return fail(err)
			}
			running[w.slot] = w
			live++
			lastStart[w.slot] = time.Now()
			log.Infof("started worker %d in its place", w.cmd.Process.Pid)
			log.Flush()
		}
	}
}

// startWorker starts this program again, with the same arguments, as a
// worker, and reports its exit on exits.
func startWorker(slot int, exits chan<- workerExit) (*worker, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{wr} // becomes readyFD
	// A worker must not outlive a parent killed with SIGKILL: it would hold
	// the port with nobody to stop it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		rd.Close()
		wr.Close()
		return nil, fmt.Errorf("starting a worker: %w", err)
	}
	wr.Close()
	w := &worker{slot: slot, cmd: cmd, ready: make(chan struct{})}
	go func() {
		var b [1]byte
		if n, _ := rd.Read(b[:]); n == 1 {
			close(w.ready)
		}
		rd.Close()
	}()
	go func() { exits <- workerExit{w, cmd.Wait()} }()
	return w, nil
}
