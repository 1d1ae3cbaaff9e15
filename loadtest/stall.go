package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The stall mode: N sessions whose target streams to them as fast as it can
// while the client has stopped reading. Each session asks the target for an
// endless download of a seeded pattern (the soak target's 'D', from a small
// send buffer: serveStream), proves itself by reading and checking the first
// bytes, and then reads nothing. The proxy can stop reading from the target
// (backpressure) and hold a bounded backlog, or keep reading and buffer; its
// memory shows which, once it stops changing. Then its CPU is read while
// nothing can move, and at last every client reads on and must get the
// pattern exactly where it left off: a proxy that saved memory by dropping
// bytes or sessions fails there.

const (
	// stallStream is what a session asks the target for: endless in practice.
	stallStream = 1 << 62
	// stallDeepBytes is how far the -resume-deep sessions read on: more than
	// any buffer on the path holds (the proxy's, and the four sockets'), so
	// the bytes can only arrive if the proxy resumed reading from the target.
	stallDeepBytes = 64 << 20
	// stallProbe is how many sessions are stalled first, to learn what one
	// costs the kernel.
	stallProbe = 16
	// stallResumeParallel is how many sessions read on at once.
	stallResumeParallel = 32
)

// stallInfo is what a stall run adds to its Result.
type stallInfo struct {
	ProveBytes      int64        `json:"prove_bytes"`        // read and checked per session before it stalls
	RcvBufBytes     int          `json:"client_rcvbuf"`      // the client's SO_RCVBUF asked for (0: autotuned)
	Plateau         bool         `json:"plateau"`            // memory stopped changing before the time limit
	PlateauSeconds  float64      `json:"plateau_s"`          // from the last open to the reading
	PlateauWindowS  float64      `json:"plateau_window_s"`   // how long memory had to stay flat
	PlateauTimeoutS float64      `json:"plateau_timeout_s"`  // how long the run waited at most
	ToleranceBytes  int64        `json:"plateau_tol_bytes"`  // how much it could move and still be flat
	Samples         []memSample  `json:"samples,omitempty"`  // every reading while waiting
	Quiet           bool         `json:"io_quiet"`           // the proxy's I/O went quiet before the time limit
	QuietSeconds    float64      `json:"io_quiet_s"`         // from the plateau until it did (or the limit)
	QuietCalls      int64        `json:"io_quiet_calls"`     // quiet: at most this many read/write calls in a second
	QuietTimeoutS   float64      `json:"io_quiet_timeout_s"` // how long the run waited for it at most
	CPUWindowS      float64      `json:"cpu_window_s"`       // ProxyCPU was read over this
	IOInCPUWindow   *ioCounts    `json:"io_in_cpu_window"`   // the proxy's read and write calls meanwhile
	MemAfterCPU     *memSnapshot `json:"mem_after_cpu"`      // one more reading, after the CPU window
	ResumeBytes     int64        `json:"resume_bytes"`       // read and checked per session after the stall
	DeepSessions    int          `json:"deep_sessions"`      // sessions that read on to DeepBytes
	DeepBytes       int64        `json:"deep_bytes"`         // ...
	DeepOK          int          `json:"deep_ok"`            // ... and got them all right
	ResumeSeconds   float64      `json:"resume_s"`           // the reading on, all sessions
	BytesVerified   int64        `json:"bytes_verified"`     // every byte read, all phases
	CorruptedBytes  int64        `json:"corrupted_bytes"`    // bytes that differed from the pattern
	ProxyGrewBytes  int64        `json:"grew_after_plateau"` // MemAfterCPU minus the plateau reading
	TCPMemPeak      int64        `json:"tcp_mem_peak"`       // the machine's TCP buffers, highest reading
	TCPPressure     int64        `json:"tcp_mem_pressure"`   // the kernel's pressure threshold (tcp_mem[1])
	TCPGuard        float64      `json:"tcp_mem_guard"`      // opening stops at this share of it (0: never)
	GuardStopped    bool         `json:"tcp_guard_stopped"`  // ... and it did
}

// memSample is one reading while waiting for the plateau, T seconds after
// the last session opened.
type memSample struct {
	T            float64 `json:"t_s"`
	PrivateDirty int64   `json:"private_dirty"`
	TCPMemBytes  int64   `json:"tcp_mem_bytes"`
}

// onPlateau says whether the newest samples make a plateau of value: every
// sample taken within window before the newest lies within tol of every
// other, and the samples cover the whole window (there is one at least
// window before the newest, and it is within tol too).
func onPlateau(samples []memSample, value func(memSample) int64, window time.Duration, tol int64) bool {
	n := len(samples)
	if n < 2 {
		return false
	}
	last := samples[n-1]
	lo, hi := value(last), value(last)
	for i := n - 2; i >= 0; i-- {
		s := samples[i]
		lo, hi = min(lo, value(s)), max(hi, value(s))
		if hi-lo > tol {
			return false
		}
		if last.T-s.T >= window.Seconds() {
			return true
		}
	}
	return false
}

func privateDirtyOf(s memSample) int64 { return s.PrivateDirty }
func tcpMemOf(s memSample) int64       { return s.TCPMemBytes }

// plateauTolerance is how much the proxy's memory may move and still be
// flat: 2% of what the sessions added, or 1 KiB a session, the larger.
func plateauTolerance(before, now int64, sessions int) int64 {
	return max(int64(sessions)<<10, (now-before)/50)
}

// stallConn is one stalled session and the pattern it must receive.
type stallConn struct {
	s    *session
	want io.Reader // the seed's stream, at the next byte to read
}

// verified counts checked bytes across sessions.
type verified struct{ ok, bad atomic.Int64 }

// read reads n payload bytes and checks them against the pattern. Every
// chunk gets opTimeout.
func (c *stallConn) read(n int64, opTimeout time.Duration, got, exp []byte, v *verified) error {
	for n > 0 {
		k := min(int64(len(got)), n)
		_ = c.s.conn.SetReadDeadline(time.Now().Add(opTimeout))
		if err := c.s.readFull(got[:k]); err != nil {
			return &phaseError{"recv", err}
		}
		_, _ = c.want.Read(exp[:k])
		bad := diffCount(got[:k], exp[:k])
		v.ok.Add(k - bad)
		v.bad.Add(bad)
		if bad > 0 {
			return &phaseError{"corrupt", fmt.Errorf("%d of %d bytes differ from the pattern", bad, k)}
		}
		n -= k
	}
	return nil
}

// waitIOQuiet waits, in windows of a second, until the read and write calls
// of pid's tree in one window are at most calls, or timeout has passed; it
// says which, and after how long. A proxy that moves bytes with splice(2)
// (the relay) shows no calls there and is quiet at once.
func waitIOQuiet(pid int, calls int64, timeout time.Duration) (quiet bool, seconds float64) {
	start := time.Now()
	last := treeIO(pid)
	for time.Since(start) < timeout {
		time.Sleep(time.Second)
		now := treeIO(pid)
		if now.minus(last).Calls <= calls {
			return true, time.Since(start).Seconds()
		}
		last = now
	}
	return false, time.Since(start).Seconds()
}

// openStall opens a session, asks the target for the endless stream of seed
// and reads the first prove bytes of it.
func openStall(e *env, seed uint64, deadline time.Time, prove int64, v *verified) (*stallConn, error) {
	s, err := openStep(e, deadline)
	if err != nil {
		return nil, err
	}
	if err := s.send(s.frame(opHeader(opDown, seed, stallStream))); err != nil {
		s.close()
		return nil, &phaseError{"send", err}
	}
	c := &stallConn{s: s, want: stream(seed)}
	buf := make([]byte, 2*min(prove, 64<<10))
	half := len(buf) / 2
	if err := c.read(prove, e.cfg.opTimeout, buf[:half], buf[half:], v); err != nil {
		s.close()
		return nil, err
	}
	_ = s.conn.SetDeadline(time.Time{})
	return c, nil
}

// runStall is the stall mode (see the top of this file).
func runStall(e *env) error {
	cfg, res := e.cfg, e.result
	if e.proxyPID == 0 {
		return errors.New("stall needs the proxy's PID: start it with -proxy-cmd or -relay, or give -proxy-pid")
	}
	st := &stallInfo{ProveBytes: cfg.proveBytes, RcvBufBytes: cfg.rcvBuf, TCPGuard: cfg.tcpMemGuard, PlateauWindowS: cfg.plateauWindow.Seconds(),
		PlateauTimeoutS: cfg.plateauTimeout.Seconds(), CPUWindowS: cfg.cpuWindow.Seconds(), ResumeBytes: cfg.resumeBytes}
	res.Stall, res.ConnsWanted = st, cfg.conns
	var v verified
	defer func() { st.BytesVerified, st.CorruptedBytes = v.ok.Load()+v.bad.Load(), v.bad.Load() }()

	// One session first, streamed and closed, warms up what the proxy sets
	// up once (buffer pools, lazily mapped code).
	seed := uint64(time.Now().UnixNano())
	warm, err := openStall(e, seed, time.Now().Add(cfg.opTimeout), max(cfg.proveBytes, 1<<20), &v)
	if err != nil {
		res.Errors.add(err)
		return fmt.Errorf("warm-up session: %w", err)
	}
	warm.s.close()
	time.Sleep(500 * time.Millisecond)
	before, sockBefore := treeMemory(e.proxyPID), readSockstat()
	res.MemBefore, res.SockBefore = &before, &sockBefore

	checks := []func() string{memAvailableCheck(cfg.minAvailMiB << 20)}
	if cfg.tcpMemGuard > 0 {
		checks = append(checks, tcpMemCheck(cfg.tcpMemGuard))
	}
	st.TCPPressure = tcpMemPressure()
	g := startGuard(checks...)
	defer g.stop()
	var next atomic.Uint64
	open := func(n int) ramp[*stallConn] {
		return openMany(e, n, cfg.dialParallel, cfg.maxFail, cfg.rampTimeout, g.reason, nil,
			func(deadline time.Time) (*stallConn, error) {
				return openStall(e, seed+next.Add(1), deadline, cfg.proveBytes, &v)
			})
	}
	// A few sessions first, to learn what a stalled session costs the
	// kernel: the guard above only sees buffers that have filled, and a
	// session's fill outlasts its opening, so the sessions that fit are
	// worked out before opening the rest.
	want := cfg.conns
	r := open(min(want, stallProbe))
	if want > stallProbe && r.stop == "" && cfg.tcpMemGuard > 0 && st.TCPPressure > 0 {
		if fit, cost := stallsThatFit(cfg.tcpMemGuard, st.TCPPressure, sockBefore.TCPMemByte, stallProbe); fit < want {
			want = fit
			r.stop = fmt.Sprintf("%s a stalled session holds about %s in socket buffers, so %d fit under %.0f%% of the pressure threshold %s",
				tcpGuardPrefix, fmtBytes(float64(cost)), fit, 100*cfg.tcpMemGuard, fmtBytes(float64(st.TCPPressure)))
		}
	}
	if want > len(r.conns) && (r.stop == "" || strings.HasPrefix(r.stop, tcpGuardPrefix)) {
		rest := open(want - len(r.conns))
		r.conns = append(r.conns, rest.conns...)
		r.elapsed += rest.elapsed
		r.errors.merge(rest.errors)
		if rest.stop != "" {
			r.stop = rest.stop
		}
	}
	defer func() {
		for _, c := range r.conns {
			c.s.close()
		}
	}()
	held := len(r.conns)
	res.ConnsOpen, res.RampSeconds, res.StopReason = held, r.elapsed.Seconds(), r.stop
	res.Errors.merge(r.errors)
	if held == 0 {
		return errors.New("no session could be opened: " + r.stop)
	}
	if r.stop != "" {
		st.GuardStopped = strings.HasPrefix(r.stop, tcpGuardPrefix)
		res.Notes = append(res.Notes, fmt.Sprintf("stalled %d of %d sessions: %s", held, cfg.conns, r.stop))
	}

	// Wait for the proxy's memory to stop changing, within a time limit.
	start := time.Now()
	var after memSnapshot
	for {
		after = treeMemory(e.proxyPID)
		st.Samples = append(st.Samples, memSample{T: time.Since(start).Seconds(), PrivateDirty: after.PrivateDirty, TCPMemBytes: readSockstat().TCPMemByte})
		st.TCPMemPeak = max(st.TCPMemPeak, st.Samples[len(st.Samples)-1].TCPMemBytes)
		st.ToleranceBytes = plateauTolerance(before.PrivateDirty, after.PrivateDirty, held)
		if onPlateau(st.Samples, privateDirtyOf, cfg.plateauWindow, st.ToleranceBytes) {
			st.Plateau = true
			break
		}
		if time.Since(start) >= cfg.plateauTimeout {
			res.Notes = append(res.Notes, fmt.Sprintf("the proxy's memory did not settle within %v (last reading %s above the one before the sessions)",
				cfg.plateauTimeout, fmtBytes(float64(after.PrivateDirty-before.PrivateDirty))))
			break
		}
		if err := proxyAlive(e); err != nil {
			return err
		}
		time.Sleep(cfg.sample)
	}
	st.PlateauSeconds = time.Since(start).Seconds()
	if st.TCPPressure > 0 && st.TCPMemPeak >= st.TCPPressure {
		res.Notes = append(res.Notes, fmt.Sprintf("the machine's TCP buffers reached the kernel's pressure threshold (%s of %s): the kernel was shrinking socket buffers",
			fmtBytes(float64(st.TCPMemPeak)), fmtBytes(float64(st.TCPPressure))))
	}
	sockAfter := readSockstat()
	res.MemAfter, res.SockAfter = &after, &sockAfter
	res.PerSession = perSessionOf(before, after, sockBefore, sockAfter, held)

	// The kernel grows a busy socket's buffers for a while after the
	// proxy's memory is flat, and the proxy moves what fits meanwhile: the
	// sessions are stalled only once that stops too.
	st.QuietCalls, st.QuietTimeoutS = max(10, int64(held)/100), cfg.quietTimeout.Seconds()
	st.Quiet, st.QuietSeconds = waitIOQuiet(e.proxyPID, st.QuietCalls, cfg.quietTimeout)
	if !st.Quiet {
		res.Notes = append(res.Notes, fmt.Sprintf("the proxy's reads and writes did not go quiet (at most %d calls in a second) within %v of the plateau",
			st.QuietCalls, cfg.quietTimeout))
	}

	// CPU while nothing moves: every session's buffers are full.
	meter, io0 := startCPU(e.proxyPID), treeIO(e.proxyPID)
	time.Sleep(cfg.cpuWindow)
	if pct := meter.percent(); pct >= 0 {
		res.ProxyCPU = newSpread([]float64{pct})
	}
	io := treeIO(e.proxyPID).minus(io0)
	st.IOInCPUWindow = &io
	later := treeMemory(e.proxyPID)
	st.MemAfterCPU = &later
	st.TCPMemPeak = max(st.TCPMemPeak, readSockstat().TCPMemByte)
	st.ProxyGrewBytes = later.PrivateDirty - after.PrivateDirty
	if st.ProxyGrewBytes > st.ToleranceBytes {
		res.Notes = append(res.Notes, fmt.Sprintf("the proxy's memory grew by %s more during the CPU window", fmtBytes(float64(st.ProxyGrewBytes))))
	}
	if err := proxyAlive(e); err != nil {
		return err
	}

	// Every session reads on, and must get the pattern where it left off.
	st.DeepSessions, st.DeepBytes = min(cfg.resumeDeep, held), max(cfg.resumeBytes, stallDeepBytes)
	resumeStart := time.Now()
	ok, deepOK, errs := resumeStalled(r.conns, st.DeepSessions, cfg.resumeBytes, st.DeepBytes, cfg.opTimeout, time.Now().Add(cfg.resumeTimeout), &v)
	st.ResumeSeconds = time.Since(resumeStart).Seconds()
	res.AliveChecked, res.AliveOK, st.DeepOK = held, ok, deepOK
	res.Errors.merge(errs)
	if ok < held {
		res.Notes = append(res.Notes, fmt.Sprintf("only %d of %d stalled sessions delivered the pattern when read again", ok, held))
	}
	if v.bad.Load() > 0 {
		return fmt.Errorf("%d corrupted bytes", v.bad.Load())
	}
	return nil
}

// stallsThatFit waits (10 s at most) for the machine's TCP buffers to stop
// growing after probe sessions stalled, and returns how many stalled
// sessions fit under share of the kernel's pressure threshold, and what one
// costs, judging by what the probe added to before.
func stallsThatFit(share float64, pressure, before int64, probe int) (fit int, cost int64) {
	var samples []memSample
	start := time.Now()
	for {
		samples = append(samples, memSample{T: time.Since(start).Seconds(), TCPMemBytes: readSockstat().TCPMemByte})
		now := samples[len(samples)-1].TCPMemBytes
		if onPlateau(samples, tcpMemOf, time.Second, plateauTolerance(before, now, probe)) || time.Since(start) > 10*time.Second {
			return sessionsThatFit(share, pressure, before, now, probe)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sessionsThatFit is stallsThatFit's arithmetic: probe sessions took the
// machine's TCP buffers from before to now; how many sessions in all fit
// under share × pressure, at that cost each?
func sessionsThatFit(share float64, pressure, before, now int64, probe int) (fit int, cost int64) {
	cost = (now - before) / int64(probe)
	if cost <= 0 {
		return math.MaxInt, cost
	}
	room := (int64(share*float64(pressure)) - now) / cost
	return probe + max(0, int(room)), cost
}

// perSessionOf is (after - before) / n.
func perSessionOf(before, after memSnapshot, sockBefore, sockAfter sockSnapshot, n int) *perSession {
	f := float64(n)
	return &perSession{
		PrivateDirty: float64(after.PrivateDirty-before.PrivateDirty) / f,
		PSS:          float64(after.PSS-before.PSS) / f,
		RSS:          float64(after.RSS-before.RSS) / f,
		Anonymous:    float64(after.Anonymous-before.Anonymous) / f,
		Procs:        float64(after.Procs-before.Procs) / f,
		TCPMemBytes:  float64(sockAfter.TCPMemByte-sockBefore.TCPMemByte) / f,
	}
}

// resumeStalled has every session read on: the first deep of them deepBytes,
// the others resumeBytes, a few sessions at a time. Sessions not started by
// the deadline count as failed.
func resumeStalled(conns []*stallConn, deep int, resumeBytes, deepBytes int64, opTimeout time.Duration, deadline time.Time, v *verified) (ok, deepOK int, errs errorTally) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(stallResumeParallel, len(conns)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, exp := make([]byte, 64<<10), make([]byte, 64<<10)
			for {
				i := int(next.Add(1)) - 1
				if i >= len(conns) {
					return
				}
				n := resumeBytes
				if i < deep {
					n = deepBytes
				}
				err := errors.New("resume time limit reached before this session's turn")
				if time.Now().Before(deadline) {
					err = conns[i].read(n, opTimeout, got, exp, v)
				}
				mu.Lock()
				if err != nil {
					errs.add(fmt.Errorf("resume: %w", err))
				} else {
					ok++
					if i < deep {
						deepOK++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok, deepOK, errs
}
