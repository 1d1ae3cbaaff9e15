package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// runHold opens cfg.conns idle sessions (each proven by one round trip) and
// reads the proxy's memory before, while and with all of them held. The
// sessions are held by holder children (holder.go), each dialing from its
// own 127.0.0.x address; a held session costs a holder no goroutine.
//
// For a forking proxy (Python's websockify) memory is summed over its whole
// process tree. The ramp stops early, and the run reports how far it got, on
// its time limit, after too many failures, if the proxy dies, or when the
// machine runs low on memory, so a proxy that collapses cannot take the
// machine with it.
func runHold(e *env) error {
	cfg, res := e.cfg, e.result
	res.ConnsWanted, res.SettleSeconds = cfg.conns, cfg.settle.Seconds()
	if e.proxyPID == 0 {
		return errors.New("hold needs the proxy's PID: start it with -proxy-cmd or -relay, or give -proxy-pid")
	}

	// First sessions warm up whatever the proxy sets up once (buffer
	// pools, the first fork, lazily mapped code), so it is not billed to
	// the sessions measured. A proxy of several processes sharing the port
	// gets enough that each of them very likely serves one.
	warmups := 1
	if procs := len(processTree(e.proxyPID)); procs > 1 {
		warmups = 12 * procs
	}
	var warm []*echoConn
	for range warmups {
		c, err := openEcho(e, 1, time.Now().Add(cfg.opTimeout))
		if err != nil {
			res.Errors.add(err)
			closeAll(warm)
			return fmt.Errorf("warm-up session: %w", err)
		}
		warm = append(warm, c)
	}
	closeAll(warm)
	time.Sleep(500 * time.Millisecond)
	if waited, ok := waitMemorySettled(e.proxyPID, 60*time.Second); !ok {
		res.Notes = append(res.Notes, fmt.Sprintf("the proxy's memory was still moving %v after the warm-up; the slope leaves that out, the two-reading figure does not", waited.Round(time.Second)))
	} else if waited > 2*time.Second {
		fmt.Fprintf(os.Stderr, "hold: the proxy's memory settled %v after the warm-up\n", waited.Round(time.Second))
	}
	before, sockBefore, slabBefore := treeMemory(e.proxyPID), readSockstat(), readSlabinfo()
	res.MemBefore, res.SockBefore = &before, &sockBefore

	g := startGuard(memAvailableCheck(cfg.minAvailMiB << 20))
	defer g.stop()
	ramp := holdSessions(e, g.reason)
	defer ramp.stopAll()
	held := ramp.held
	res.ConnsOpen, res.RampSeconds, res.StopReason = held, ramp.elapsed.Seconds(), ramp.stop
	res.Holders, res.MemCurve = len(ramp.holders), ramp.curve
	res.Errors.merge(ramp.errors)

	time.Sleep(cfg.settle)
	after, sockAfter, slabAfter := treeMemory(e.proxyPID), readSockstat(), readSlabinfo()
	res.MemAfter, res.SockAfter = &after, &sockAfter
	if held == 0 {
		return errors.New("no session could be held: " + ramp.stop)
	}
	res.PerSession = perSessionOf(before, after, sockBefore, sockAfter, held)
	// The settled reading is one more point of the curve, the best one.
	res.MemCurve = append(res.MemCurve, memPoint{Sessions: held, PrivateDirty: after.PrivateDirty, RSS: after.RSS, TCPMemBytes: sockAfter.TCPMemByte})
	res.MemFit = fitMemory(res.MemCurve)
	res.Slab = slabPerSession(slabBefore, slabAfter, held)
	if res.MemFit != nil {
		fmt.Fprintf(os.Stderr, "hold: %s per session by the slope of %d readings (R² %.4f), intercept %s\n",
			fmtBytes(res.MemFit.BytesPerSession), res.MemFit.Points, res.MemFit.R2, fmtBytes(res.MemFit.InterceptBytes))
	}

	// Prove the sessions are still there, not just counted: a proxy that
	// dropped them would otherwise look very cheap. Every held session
	// echoes again unless -alive-sample asks for fewer; the holders check
	// theirs at the same time.
	for _, h := range ramp.holders {
		h.send("CHECK " + strconv.Itoa(aliveShare(cfg.aliveSample, len(ramp.holders), int(h.opened.Load()))))
	}
	for _, h := range ramp.holders {
		// Generous: a loaded two-core machine answered 100,000 round
		// trips at a few thousand a second.
		r, err := h.aliveReport(3*cfg.opTimeout + time.Duration(h.opened.Load())*5*time.Millisecond)
		if err != nil {
			res.Errors.add(fmt.Errorf("alive check: %w", err))
			continue
		}
		res.AliveChecked += r.Checked
		res.AliveOK += r.OK
		res.Errors.merge(r.Errors)
	}
	if ramp.stop != "" {
		res.Notes = append(res.Notes, fmt.Sprintf("held %d of %d sessions: %s", held, cfg.conns, ramp.stop))
	}
	if res.AliveOK < res.AliveChecked {
		res.Notes = append(res.Notes, fmt.Sprintf("only %d of %d re-checked sessions still echoed after the reading", res.AliveOK, res.AliveChecked))
	}
	if res.AliveChecked < held && cfg.aliveSample == 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("only %d of %d held sessions could be re-checked after the reading", res.AliveChecked, held))
	}
	return nil
}

// waitMemorySettled waits, up to limit, until the proxy tree's private
// dirty memory has stayed within 1% (or 256 KiB) for 3 s: a Go proxy's heap
// returns what its start-up and warm-up left behind only gradually, and a
// curve read while it does slopes down.
func waitMemorySettled(pid int, limit time.Duration) (time.Duration, bool) {
	const window = 6 // readings 500 ms apart
	start := time.Now()
	var readings []int64
	for time.Since(start) < limit {
		readings = append(readings, treeMemory(pid).PrivateDirty)
		if len(readings) >= window {
			last := readings[len(readings)-window:]
			lo, hi := slices.Min(last), slices.Max(last)
			if hi-lo <= max(256<<10, hi/100) {
				return time.Since(start), true
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return time.Since(start), false
}

// sessionsPerHolder is what one holder child opens at most: a socket each,
// under the 20,000-descriptor limit, and well inside the ephemeral ports of
// its own source address.
const sessionsPerHolder = 8000

// holdRamp is how far the holders got.
type holdRamp struct {
	holders []*holderProc
	held    int
	elapsed time.Duration
	stop    string
	errors  errorTally
	curve   []memPoint
}

func (r *holdRamp) stopAll() {
	for _, h := range r.holders {
		h.stop()
	}
}

// holdSessions starts the holders and follows their ramp, reading the
// proxy's memory every time another twentieth of the sessions is open. It
// stops the holders early when shouldStop says so or the proxy dies.
func holdSessions(e *env, shouldStop func() string) *holdRamp {
	cfg := e.cfg
	r := &holdRamp{}
	n := holderCount(cfg.conns, cfg.targetPorts)
	parallel := max(4, cfg.dialParallel/n)
	start := time.Now()
	for i := range n {
		share := cfg.conns / n
		if i < cfg.conns%n {
			share++
		}
		// 127.0.0.1 is the proxy's and the target's; holders use .11 up.
		src := fmt.Sprintf("127.0.0.%d", 11+i)
		h, err := startHolder(e, holderURL(e, i), src, share, parallel)
		if err != nil {
			r.errors.add(fmt.Errorf("starting a holder: %w", err))
			r.stop = err.Error()
			break
		}
		r.holders = append(r.holders, h)
	}

	// Readings every twentieth of the way (and every 2 s) are the points
	// the memory per session is fitted to.
	step := max(100, cfg.conns/20)
	next := step
	idle := treeMemory(e.proxyPID)
	r.curve = append(r.curve, memPoint{Sessions: 0, PrivateDirty: idle.PrivateDirty, RSS: idle.RSS, TCPMemBytes: readSockstat().TCPMemByte})
	halted := false
	halt := func(why string) {
		if !halted {
			halted, r.stop = true, why
			for _, h := range r.holders {
				h.send("STOP")
			}
		}
	}
	lastReport, lastPoint := time.Now(), time.Now()
	for {
		done, opened := true, 0
		for _, h := range r.holders {
			opened += int(h.opened.Load())
			select {
			case <-h.exited:
			default:
				if len(h.held) == 0 {
					done = false
				}
			}
		}
		// A reading every twentieth of the way, and every 2 s while the count
		// moves, so a slow proxy that stops early still draws a curve.
		last := r.curve[len(r.curve)-1]
		if opened >= next || (opened > last.Sessions && (done || time.Since(lastPoint) >= 2*time.Second)) {
			lastPoint = time.Now()
			m := treeMemory(e.proxyPID)
			r.curve = append(r.curve, memPoint{Sessions: opened, PrivateDirty: m.PrivateDirty, RSS: m.RSS, TCPMemBytes: readSockstat().TCPMemByte})
			for next <= opened {
				next += step
			}
		}
		if done {
			break
		}
		if time.Since(lastReport) > 2*time.Second {
			fmt.Fprintf(os.Stderr, "hold: %d of %d sessions open after %v\n", opened, cfg.conns, time.Since(start).Round(time.Second))
			lastReport = time.Now()
		}
		if why := shouldStop(); why != "" {
			halt(why)
		}
		if err := proxyAlive(e); err != nil {
			halt(err.Error())
		}
		if time.Since(start) > cfg.rampTimeout+cfg.opTimeout+5*time.Second {
			halt(fmt.Sprintf("ramp time limit %v", cfg.rampTimeout))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, h := range r.holders {
		rep, err := h.waitHeld(cfg.opTimeout + 5*time.Second)
		if err != nil {
			r.errors.add(err)
			continue
		}
		r.held += rep.Held
		r.errors.merge(rep.Errors)
		if rep.Stop != "" && r.stop == "" {
			r.stop = rep.Stop
		}
	}
	r.elapsed = time.Since(start)
	if r.held >= cfg.conns {
		r.stop = ""
	}
	return r
}

// guard runs checks in the background every 200 ms and keeps the first
// reason one of them gives to stop opening sessions (the machine running
// low on memory): openers read it without touching /proc themselves.
type guard struct {
	why  atomic.Value
	done chan struct{}
}

func startGuard(checks ...func() string) *guard {
	g := &guard{done: make(chan struct{})}
	g.why.Store("")
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-g.done:
				return
			case <-t.C:
				if g.reason() != "" {
					continue
				}
				for _, check := range checks {
					if why := check(); why != "" {
						g.why.Store(why)
						break
					}
				}
			}
		}
	}()
	return g
}

// reason is why opening should stop, or "".
func (g *guard) reason() string { return g.why.Load().(string) }

func (g *guard) stop() { close(g.done) }

// memAvailableCheck stops a ramp when MemAvailable falls below minAvail bytes.
func memAvailableCheck(minAvail int64) func() string {
	return func() string {
		if avail := memAvailable(); avail >= 0 && avail < minAvail {
			return fmt.Sprintf("machine memory guard: MemAvailable %s < %s", fmtBytes(float64(avail)), fmtBytes(float64(minAvail)))
		}
		return ""
	}
}

// tcpMemCheck stops a ramp when the machine's TCP buffers (sockstat "mem")
// reach share of the kernel's pressure threshold (tcp_mem, second field):
// past it the kernel starts shrinking every socket's buffers, other jobs'
// included.
func tcpMemCheck(share float64) func() string {
	limit := tcpMemPressure()
	if limit <= 0 {
		return func() string { return "" }
	}
	return func() string {
		if used := readSockstat().TCPMemByte; float64(used) >= share*float64(limit) {
			return fmt.Sprintf(tcpGuardPrefix+" %s in socket buffers, %.0f%% of the pressure threshold %s",
				fmtBytes(float64(used)), 100*share, fmtBytes(float64(limit)))
		}
		return ""
	}
}

// tcpGuardPrefix starts the reason tcpMemCheck gives.
const tcpGuardPrefix = "kernel TCP memory guard:"

// tcpMemPressure is net.ipv4.tcp_mem's pressure threshold in bytes, -1 if
// unknown.
func tcpMemPressure() int64 {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_mem")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return -1
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return -1
	}
	return pages * int64(os.Getpagesize())
}
