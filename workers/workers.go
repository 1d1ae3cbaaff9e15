// Package workers runs websockify as several processes (--workers N): the
// parent starts N copies of itself, with the same arguments, that each bind
// the listening port with SO_REUSEPORT, so the kernel spreads new clients
// over them. Each worker is a whole proxy with its own event loops and its
// own open-file limit: one process can hold about RLIMIT_NOFILE/2 sessions,
// and workers are how one machine holds more.
//
// The parent only supervises (Supervise): it starts the workers, waits until
// each reports its listeners bound (Ready), has the caller check that nobody
// else listens on the port, forwards signals, and replaces a worker that
// dies. It owns processes, never sockets.
package workers

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// workerEnv marks a process as one of the workers of the parent that set it.
const workerEnv = "WEBSOCKIFY_WORKER"

// readyFD is the descriptor on which a worker reports that it is listening:
// the write end of a pipe from the parent (exec.Cmd.ExtraFiles[0]).
const readyFD = 3

// workerStartLimit bounds how long a worker may take to bind its listeners.
const workerStartLimit = 10 * time.Second

// IsWorker reports whether this process was started by Supervise.
func IsWorker() bool { return os.Getenv(workerEnv) != "" }

// Slot tells a worker which of the n workers it is (0 <= slot < n); it
// returns 0, 1 outside a worker. Workers number what they share out by it,
// such as --record's files, so that no two write the same file.
func Slot() (slot, n int) {
	if _, err := fmt.Sscanf(os.Getenv(workerEnv), "%d/%d", &slot, &n); err != nil || n < 1 || slot < 0 || slot >= n {
		return 0, 1
	}
	return slot, n
}

// Ready tells the parent that this worker's listeners are bound. Call it
// once, in a worker.
func Ready() {
	ready := os.NewFile(readyFD, "ready")
	_, _ = ready.Write([]byte{1})
	_ = ready.Close()
}

// Logger is what Supervise logs through (eventloop.Logger is one).
type Logger interface {
	Infof(format string, args ...any)
	Flush()
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

// workerStopGrace is how long past its drain time (--shutdown-timeout) a
// worker told to stop may take to exit before it is killed.
const workerStopGrace = 5 * time.Second

// Supervise runs n workers until SIGTERM or SIGINT stops them; each is then
// given drain (its --shutdown-timeout) and workerStopGrace to exit before it
// is killed. Once all are listening, soleListeners is given their PIDs and
// fails when another process shares their port. It returns an error when
// the workers cannot start, the port is not theirs alone, or a replaced
// worker keeps dying.
func Supervise(n int, drain time.Duration, log Logger, soleListeners func(pids []int) error) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGHUP)
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
		w, err := startWorker(slot, n, exits)
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
	if err := soleListeners(pids); err != nil {
		return fail(err)
	}
	log.Infof("%d workers listening: pids %v", n, pids)
	log.Flush()

	lastStart := make([]time.Time, n)
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				stopAll(sig) // each worker logs its own status line
				continue
			case syscall.SIGHUP:
				// Each worker reopens its own log file, and so does the parent.
				if r, ok := log.(interface{ Reopen() error }); ok {
					if err := r.Reopen(); err != nil {
						log.Infof("reopening the log file: %v", err)
					}
				}
				stopAll(sig)
				continue
			}
			log.Infof("Got %v, shutting down %d workers", sig, live)
			log.Flush()
			stopAll(syscall.SIGTERM)
			killAt := time.After(drain + workerStopGrace)
			for live > 0 {
				select {
				case ex := <-exits:
					running[ex.w.slot] = nil
					live--
				case <-killAt:
					log.Infof("%d workers still running %v after the signal: killing them", live, drain+workerStopGrace)
					stopAll(syscall.SIGKILL)
					waitAll()
				}
			}
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
			w, err := startWorker(ex.w.slot, n, exits)
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
func startWorker(slot, n int, exits chan<- workerExit) (*worker, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d/%d", workerEnv, slot, n))
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
