package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// echoConn is one open session with its message built once.
type echoConn struct {
	s    *session
	wire []byte // what goes on the wire: a masked frame, or the raw message
	want []byte // what must come back
	got  []byte
}

func newEchoConn(s *session, size int) *echoConn {
	msg := make([]byte, size)
	_, _ = rand.Read(msg)
	return &echoConn{s: s, wire: s.frame(msg), want: msg, got: make([]byte, size)}
}

// ramp is how far opening sessions of some kind got.
type ramp[T any] struct {
	conns   []T
	elapsed time.Duration
	stop    string // empty when all wanted sessions opened
	errors  errorTally
}

// rampResult is how far opening echo sessions got.
type rampResult = ramp[*echoConn]

// openSessions opens up to want sessions, parallel at a time, each proven by
// one echo round trip of size bytes. It stops early at the deadline, after
// maxFail failures, when the proxy dies, or when shouldStop says so.
// openForMeasuring opens cfg.conns sessions (what names them in the
// result's notes) and records the ramp in the result; it fails only when
// none could be opened.
func openForMeasuring(e *env, what string) (rampResult, error) {
	cfg, res := e.cfg, e.result
	ramp := openSessions(e, cfg.conns, cfg.dialParallel, cfg.msgSize, cfg.maxFail, cfg.rampTimeout, nil)
	res.ConnsOpen, res.RampSeconds, res.StopReason = len(ramp.conns), ramp.elapsed.Seconds(), ramp.stop
	res.Errors.merge(ramp.errors)
	if len(ramp.conns) == 0 {
		return ramp, fmt.Errorf("no %s could be opened: %s", what, ramp.stop)
	}
	if ramp.stop != "" {
		res.Notes = append(res.Notes, fmt.Sprintf("measured on %d of %d %s: %s", len(ramp.conns), cfg.conns, what, ramp.stop))
	}
	return ramp, nil
}

func openSessions(e *env, want, parallel, size, maxFail int, limit time.Duration, shouldStop func() string) rampResult {
	return openSessionsCounting(e, want, parallel, size, maxFail, limit, shouldStop, nil)
}

// openSessionsCounting is openSessions that also counts opened sessions in
// opened (when not nil) as it goes, for progress reports.
func openSessionsCounting(e *env, want, parallel, size, maxFail int, limit time.Duration, shouldStop func() string, opened *atomic.Int64) rampResult {
	return openMany(e, want, parallel, maxFail, limit, shouldStop, opened,
		func(deadline time.Time) (*echoConn, error) { return openEcho(e, size, deadline) })
}

// openMany opens up to want sessions with open, parallel at a time, with the
// stopping rules of openSessions. open gets the ramp's deadline.
func openMany[T any](e *env, want, parallel, maxFail int, limit time.Duration, shouldStop func() string, opened *atomic.Int64, open func(deadline time.Time) (T, error)) ramp[T] {
	var (
		mu      sync.Mutex
		r       ramp[T]
		claimed atomic.Int64
		fails   atomic.Int64
		stopped atomic.Bool
		stopMsg atomic.Value
	)
	halt := func(why string) {
		if stopped.CompareAndSwap(false, true) {
			stopMsg.Store(why)
		}
	}
	start := time.Now()
	deadline := start.Add(limit)
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped.Load() {
				if claimed.Add(1) > int64(want) {
					return
				}
				if time.Now().After(deadline) {
					halt(fmt.Sprintf("ramp time limit %v", limit))
					return
				}
				if shouldStop != nil {
					if why := shouldStop(); why != "" {
						halt(why)
						return
					}
				}
				if err := proxyAlive(e); err != nil {
					halt(err.Error())
					return
				}
				c, err := open(deadline)
				if err != nil {
					mu.Lock()
					r.errors.add(err)
					mu.Unlock()
					claimed.Add(-1) // the slot is still to be filled
					if fails.Add(1) >= int64(maxFail) {
						halt(fmt.Sprintf("%d failed opens (last: %v)", maxFail, err))
					}
					continue
				}
				mu.Lock()
				r.conns = append(r.conns, c)
				mu.Unlock()
				if opened != nil {
					opened.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	if v := stopMsg.Load(); v != nil && len(r.conns) < want {
		r.stop = v.(string)
	}
	return r
}

// openStep opens a session whose next step must end within the op timeout,
// cut short by deadline.
func openStep(e *env, deadline time.Time) (*session, error) {
	s, err := e.client.open(background)
	if err != nil {
		return nil, err
	}
	stepEnd := time.Now().Add(e.cfg.opTimeout)
	if deadline.Before(stepEnd) {
		stepEnd = deadline
	}
	_ = s.conn.SetDeadline(stepEnd)
	return s, nil
}

// openEcho opens a session and does its first round trip; the step limit is
// the op timeout, cut short by the ramp deadline.
func openEcho(e *env, size int, deadline time.Time) (*echoConn, error) {
	s, err := openStep(e, deadline)
	if err != nil {
		return nil, err
	}
	c := newEchoConn(s, size)
	if err := c.s.roundTrip(c.wire, c.want, c.got); err != nil {
		s.close()
		return nil, err
	}
	_ = s.conn.SetDeadline(time.Time{})
	return c, nil
}

func closeAll(conns []*echoConn) {
	for _, c := range conns {
		c.s.close()
	}
}

// runEcho opens cfg.conns sessions, then has every one of them do round trips
// with a random think time between them, for cfg.repeat windows of
// cfg.duration. Latency is from the write of the request to the last byte of
// the answer.
func runEcho(e *env) error {
	cfg, res := e.cfg, e.result
	res.ConnsWanted, res.ThinkMs, res.MsgBytes = cfg.conns, float64(cfg.think)/1e6, cfg.msgSize
	res.WindowSeconds = cfg.duration.Seconds()
	ramp, err := openForMeasuring(e, "connections")
	defer closeAll(ramp.conns)
	if err != nil {
		return err
	}

	windows := cfg.repeat
	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(time.Duration(windows) * cfg.duration)
	bg, err := startBackground(e, cfg.background, end)
	if err != nil {
		return err
	}
	type connStats struct {
		rtts [][]time.Duration // per window
		errs errorTally
		lost bool
	}
	stats := make([]connStats, len(ramp.conns))
	var wg sync.WaitGroup
	meters := make([]cpuMeter, windows)
	cpuDone := make(chan []float64, 1)
	go func() {
		// CPU per window, read at the window boundaries.
		var pcts []float64
		for w := 0; w < windows; w++ {
			time.Sleep(time.Until(start.Add(time.Duration(w) * cfg.duration)))
			meters[w] = startCPU(e.proxyPID)
			side := startSide(e)
			time.Sleep(time.Until(start.Add(time.Duration(w+1) * cfg.duration)))
			side.record(e)
			if p := meters[w].percent(); p >= 0 {
				pcts = append(pcts, p)
			}
		}
		cpuDone <- pcts
	}()
	for i, c := range ramp.conns {
		wg.Add(1)
		go func(st *connStats, c *echoConn) {
			defer wg.Done()
			st.rtts = make([][]time.Duration, windows)
			// Spread the first requests over one think time.
			next := start.Add(time.Duration(mrand.Int64N(int64(cfg.think) + 1)))
			for {
				time.Sleep(time.Until(next))
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				_ = c.s.conn.SetDeadline(t0.Add(cfg.opTimeout))
				if err := c.s.roundTrip(c.wire, c.want, c.got); err != nil {
					st.errs.add(err)
					st.lost = true
					return
				}
				d := time.Since(t0)
				w := int(t0.Sub(start) / cfg.duration)
				if w >= 0 && w < windows {
					st.rtts[w] = append(st.rtts[w], d)
				}
				next = time.Now().Add(time.Duration(float64(cfg.think) * (0.5 + mrand.Float64())))
			}
		}(&stats[i], c)
	}
	wg.Wait()
	cpu := <-cpuDone
	if cfg.background > 0 {
		res.Background = cfg.background
		res.BackgroundMBps = bg.wait(start, cfg.opTimeout)
		res.Errors.merge(bg.errs)
	}

	var p50, p99, rate []float64
	var maxRTT time.Duration
	for w := 0; w < windows; w++ {
		var all []time.Duration
		for i := range stats {
			all = append(all, stats[i].rtts[w]...)
		}
		slices.Sort(all)
		res.RoundTrips += int64(len(all))
		if len(all) == 0 {
			continue
		}
		p50 = append(p50, micros(percentile(all, 0.50)))
		p99 = append(p99, micros(percentile(all, 0.99)))
		rate = append(rate, float64(len(all))/cfg.duration.Seconds())
		maxRTT = max(maxRTT, all[len(all)-1])
	}
	for i := range stats {
		res.Errors.merge(stats[i].errs)
		if stats[i].lost {
			res.ConnsLost++
		}
	}
	res.RTTP50us, res.RTTP99us, res.RTPerSec = newSpread(p50), newSpread(p99), newSpread(rate)
	res.RTTMaxUs = micros(maxRTT)
	res.ProxyCPU = newSpread(cpu)
	if res.RoundTrips == 0 {
		return errors.New("no round trip completed")
	}
	return nil
}

// bulkLoad is bulk traffic beside the round trips (echo -background N):
// N sessions that each keep sending 64 KiB frames until the end of the
// windows, while reading back (and dropping) what the echo target returns.
type bulkLoad struct {
	wg    sync.WaitGroup // readers
	ww    sync.WaitGroup // writers
	mu    sync.Mutex
	bytes atomic.Int64 // echoed bytes read back
	errs  errorTally
	conns []*session
}

func startBackground(e *env, n int, end time.Time) (*bulkLoad, error) {
	bg := &bulkLoad{}
	for range n {
		s, err := e.client.open(background)
		if err != nil {
			bg.close()
			return nil, fmt.Errorf("background session: %w", err)
		}
		bg.conns = append(bg.conns, s)
	}
	payload := make([]byte, 64<<10)
	_, _ = rand.Read(payload)
	for _, s := range bg.conns {
		wire := s.frame(payload)
		_ = s.conn.SetDeadline(time.Time{})
		bg.wg.Add(1)
		bg.ww.Add(1)
		go func() { // writer
			defer bg.ww.Done()
			for time.Now().Before(end) {
				_ = s.conn.SetWriteDeadline(time.Now().Add(e.cfg.opTimeout))
				if err := s.send(wire); err != nil {
					bg.fail(err)
					return
				}
			}
		}()
		go func() { // reader: whatever comes back until the socket closes
			defer bg.wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := s.conn.Read(buf)
				bg.bytes.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	return bg, nil
}

func (bg *bulkLoad) fail(err error) {
	bg.mu.Lock()
	bg.errs.add(fmt.Errorf("background: %w", err))
	bg.mu.Unlock()
}

// wait lets the writers finish their last frame (each write has its own
// deadline), closes the sessions and returns the rate of echoed bytes since
// start, in MB/s. Closing under a writer would count its cut-off write as
// an error.
func (bg *bulkLoad) wait(start time.Time, drain time.Duration) *Spread {
	bg.ww.Wait()
	deadline := time.Now().Add(drain)
	for _, s := range bg.conns {
		_ = s.conn.SetReadDeadline(deadline)
	}
	got := bg.bytes.Load()
	el := time.Since(start).Seconds()
	bg.close()
	bg.wg.Wait()
	return newSpread([]float64{float64(got) / el / 1e6})
}

func (bg *bulkLoad) close() {
	for _, s := range bg.conns {
		s.conn.Close()
	}
}
