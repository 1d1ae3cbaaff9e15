package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The hold mode's sessions live in holder children (this binary re-executed
// with the hidden "holder" subcommand), a few thousand each: one process
// cannot hold 50,000 sockets under a 20,000-descriptor limit, and each holder
// dials from its own 127.0.0.x address so that the ephemeral port range
// (about 28,000 ports per source and destination pair) does not cap the run.
//
// A holder talks to its parent in lines. On stdout: "OPENED n" while it
// ramps, then "HELD {json}" when it is done opening, and "ALIVE {json}" for
// each check. On stdin: "STOP" ends the ramp early, "CHECK k" re-checks k (0: all)
// held sessions with a round trip, and end of input closes everything.

// holderReport is the HELD line's payload.
type holderReport struct {
	Held    int        `json:"held"`
	Stop    string     `json:"stop,omitempty"`
	Elapsed float64    `json:"elapsed_s"`
	Errors  errorTally `json:"errors"`
}

// aliveReport is the ALIVE line's payload.
type aliveReport struct {
	Checked int        `json:"checked"`
	OK      int        `json:"ok"`
	Errors  errorTally `json:"errors"`
}

// holderMain is the hidden "holder" subcommand.
func holderMain(args []string) error {
	cfg := &settings{mode: "hold"}
	fs := flag.NewFlagSet("holder", flag.ContinueOnError)
	fs.StringVar(&cfg.proxyURL, "proxy", "", "proxy URL")
	fs.BoolVar(&cfg.raw, "raw", false, "raw TCP")
	src := fs.String("src", "", "source address to dial from")
	fs.IntVar(&cfg.conns, "conns", 0, "sessions to open")
	fs.IntVar(&cfg.dialParallel, "dial-parallel", 16, "sessions being opened at once")
	fs.IntVar(&cfg.maxFail, "max-fail", 100, "stop after this many failures")
	fs.DurationVar(&cfg.rampTimeout, "ramp-timeout", 2*time.Minute, "limit for opening")
	fs.DurationVar(&cfg.opTimeout, "op-timeout", 10*time.Second, "limit for one step")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := newClient(cfg.proxyURL, cfg.raw, cfg.opTimeout, 4096)
	if err != nil {
		return err
	}
	if *src != "" {
		if err := checkLoopback(*src + ":0"); err != nil {
			return err
		}
		c.src = *src
	}
	e := &env{cfg: cfg, client: c, result: &Result{}}

	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		fmt.Printf(format+"\n", a...)
		out.Unlock()
	}
	var stopped atomic.Bool
	commands := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "STOP" {
				stopped.Store(true)
				continue
			}
			commands <- sc.Text()
		}
		close(commands) // the parent is done (or gone)
	}()

	rampDone := make(chan struct{})
	var opened atomic.Int64
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		last := int64(-1)
		for {
			select {
			case <-rampDone:
				return
			case <-t.C:
				if n := opened.Load(); n != last {
					say("OPENED %d", n)
					last = n
				}
			}
		}
	}()
	ramp := openSessionsCounting(e, cfg.conns, cfg.dialParallel, 1, cfg.maxFail, cfg.rampTimeout,
		func() string {
			if stopped.Load() {
				return "stopped by the parent"
			}
			return ""
		}, &opened)
	close(rampDone)
	defer closeAll(ramp.conns)
	held, _ := json.Marshal(holderReport{Held: len(ramp.conns), Stop: ramp.stop, Elapsed: ramp.elapsed.Seconds(), Errors: ramp.errors})
	say("HELD %s", held)

	for cmd := range commands {
		k, ok := strings.CutPrefix(cmd, "CHECK ")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(k)
		r := checkAlive(ramp.conns, n, cfg.opTimeout)
		b, _ := json.Marshal(r)
		say("ALIVE %s", b)
	}
	return nil
}

// checkAlive re-checks up to n of conns, spread evenly, with a round trip;
// every one when n is 0 or more than there are. A few sessions are checked
// at a time, so one that does not answer costs its timeout once, not the
// whole check's time.
func checkAlive(conns []*echoConn, n int, timeout time.Duration) aliveReport {
	var r aliveReport
	if len(conns) == 0 {
		return r
	}
	if n <= 0 || n > len(conns) {
		n = len(conns)
	}
	step := max(1, len(conns)/n)
	picks := make(chan *echoConn)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range aliveParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range picks {
				_ = c.s.conn.SetDeadline(time.Now().Add(timeout))
				err := c.s.roundTrip(c.wire, c.want, c.got)
				mu.Lock()
				r.Checked++
				if err != nil {
					r.Errors.add(fmt.Errorf("alive check: %w", err))
				} else {
					r.OK++
				}
				mu.Unlock()
			}
		}()
	}
	for i, k := 0, 0; i < len(conns) && k < n; i, k = i+step, k+1 {
		picks <- conns[i]
	}
	close(picks)
	wg.Wait()
	return r
}

// aliveParallel is how many sessions a holder re-checks at once.
const aliveParallel = 8

// holderProc is a running holder child, seen from the parent.
type holderProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	opened atomic.Int64
	held   chan holderReport // one value, when the ramp is over
	alive  chan aliveReport
	exited chan struct{}
}

// startHolder starts a holder child that opens conns sessions to proxyURL
// from src.
func startHolder(e *env, proxyURL, src string, conns, parallel int) (*holderProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cfg := e.cfg
	args := []string{"holder", "-proxy", proxyURL, "-src", src,
		"-conns", strconv.Itoa(conns), "-dial-parallel", strconv.Itoa(parallel),
		"-max-fail", strconv.Itoa(cfg.maxFail), "-ramp-timeout", cfg.rampTimeout.String(),
		"-op-timeout", cfg.opTimeout.String()}
	if e.client.raw {
		args = append(args, "-raw")
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &holderProc{cmd: cmd, stdin: stdin, held: make(chan holderReport, 1), alive: make(chan aliveReport, 1), exited: make(chan struct{})}
	atCleanup(h.stop)
	go func() {
		defer close(h.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			verb, rest, _ := strings.Cut(sc.Text(), " ")
			switch verb {
			case "OPENED":
				n, _ := strconv.ParseInt(rest, 10, 64)
				h.opened.Store(n)
			case "HELD":
				var r holderReport
				_ = json.Unmarshal([]byte(rest), &r)
				h.opened.Store(int64(r.Held))
				h.held <- r
			case "ALIVE":
				var r aliveReport
				_ = json.Unmarshal([]byte(rest), &r)
				h.alive <- r
			}
		}
		_ = cmd.Wait()
	}()
	return h, nil
}

func (h *holderProc) send(line string) { _, _ = io.WriteString(h.stdin, line+"\n") }

// waitHeld waits for the end of the holder's ramp.
func (h *holderProc) waitHeld(limit time.Duration) (holderReport, error) {
	select {
	case r := <-h.held:
		return r, nil
	case <-h.exited:
		return holderReport{}, errors.New("holder exited before reporting")
	case <-time.After(limit):
		return holderReport{}, errors.New("holder did not finish its ramp in time")
	}
}

// aliveReport waits for the answer to a CHECK sent to the holder.
func (h *holderProc) aliveReport(limit time.Duration) (aliveReport, error) {
	select {
	case r := <-h.alive:
		return r, nil
	case <-h.exited:
		return aliveReport{}, errors.New("holder exited during the alive check")
	case <-time.After(limit):
		return aliveReport{}, errors.New("alive check timed out")
	}
}

// stop closes the holder's input (it then closes its sessions and exits)
// and kills it if it lingers.
func (h *holderProc) stop() {
	_ = h.stdin.Close()
	select {
	case <-h.exited:
	case <-time.After(5 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
}
