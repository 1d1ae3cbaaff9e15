package main

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// runHold opens cfg.conns idle sessions (each proven by one round trip) and
// reads the proxy's memory before and with all of them held. Held sessions
// cost the client no goroutine: they just sit in a slice.
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

	// A first session warms up whatever the proxy sets up once (buffer
	// pools, the first fork, lazily mapped code), so it is not billed to
	// the sessions measured.
	if warm, err := openEcho(e, 1, time.Now().Add(cfg.opTimeout)); err == nil {
		warm.s.close()
	} else {
		res.Errors.add(err)
		return fmt.Errorf("warm-up session: %w", err)
	}
	time.Sleep(500 * time.Millisecond)
	before, sockBefore := treeMemory(e.proxyPID), readSockstat()
	res.MemBefore, res.SockBefore = &before, &sockBefore

	// The memory guard is read by every opener, so sample it in the
	// background rather than per session.
	minAvail := cfg.minAvailMiB << 20
	var lowMem atomic.Value
	lowMem.Store("")
	guardDone := make(chan struct{})
	defer close(guardDone)
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-guardDone:
				return
			case <-t.C:
				if avail := memAvailable(); avail >= 0 && avail < minAvail {
					lowMem.Store(fmt.Sprintf("machine memory guard: MemAvailable %s < %s", fmtBytes(float64(avail)), fmtBytes(float64(minAvail))))
				}
			}
		}
	}()
	ramp := openSessions(e, cfg.conns, cfg.dialParallel, 1, cfg.maxFail, cfg.rampTimeout,
		func() string { return lowMem.Load().(string) })
	defer closeAll(ramp.conns)
	held := len(ramp.conns)
	res.ConnsOpen, res.RampSeconds, res.StopReason = held, ramp.elapsed.Seconds(), ramp.stop
	res.Errors.merge(ramp.errors)

	time.Sleep(cfg.settle)
	after, sockAfter := treeMemory(e.proxyPID), readSockstat()
	res.MemAfter, res.SockAfter = &after, &sockAfter
	if held == 0 {
		return errors.New("no session could be held: " + ramp.stop)
	}
	n := float64(held)
	res.PerSession = &perSession{
		PrivateDirty: float64(after.PrivateDirty-before.PrivateDirty) / n,
		PSS:          float64(after.PSS-before.PSS) / n,
		RSS:          float64(after.RSS-before.RSS) / n,
		Anonymous:    float64(after.Anonymous-before.Anonymous) / n,
		Procs:        float64(after.Procs-before.Procs) / n,
		TCPMemBytes:  float64(sockAfter.TCPMemByte-sockBefore.TCPMemByte) / n,
	}

	// Prove the sessions are still there, not just counted: a proxy that
	// dropped them would otherwise look very cheap.
	step := max(1, held/max(1, cfg.aliveSample))
	for i := 0; i < held && res.AliveChecked < cfg.aliveSample; i += step {
		c := ramp.conns[i]
		res.AliveChecked++
		_ = c.s.conn.SetDeadline(time.Now().Add(cfg.opTimeout))
		if err := c.s.roundTrip(c.wire, c.want, c.got); err != nil {
			res.Errors.add(fmt.Errorf("alive check: %w", err))
			continue
		}
		res.AliveOK++
	}
	if ramp.stop != "" {
		res.Notes = append(res.Notes, fmt.Sprintf("held %d of %d sessions: %s", held, cfg.conns, ramp.stop))
	}
	if res.AliveOK < res.AliveChecked {
		res.Notes = append(res.Notes, fmt.Sprintf("only %d of %d sampled sessions still echoed after the reading", res.AliveOK, res.AliveChecked))
	}
	return nil
}
