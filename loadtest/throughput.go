package main

import (
	"fmt"
	"sync"
	"time"
)

// throughputOpenParallel is how many of a multi-connection run's sessions
// are opened at once. Opening is not timed; a small number keeps forking
// proxies (Python's) from failing at the start rather than under load.
const throughputOpenParallel = 8

// runThroughput moves cfg.nbytes per run, cfg.repeat times, each run on
// fresh connections: one, or with -conns N, N at once each moving nbytes/N
// (the rate reported is the aggregate). The clock runs at the client: for
// "down" from the go bytes until every last byte is read, for "up" from the
// first frames until every target ack is back, so both include the proxy's
// last hop. The N sessions are all open before the clock starts.
func runThroughput(e *env) error {
	cfg, res := e.cfg, e.result
	conns := throughputConns(cfg)
	per := targetBytes(cfg)
	res.Dir, res.Bytes = cfg.dir, per*int64(conns)
	res.ConnsWanted = conns
	if cfg.dir == "up" && !e.client.raw {
		res.FrameBytes = cfg.frameSize
	}
	var mbps, cpu []float64
	defer func() {
		res.MBps = newSpread(mbps)
		res.ProxyCPU = newSpread(cpu)
	}()
	if per < 1 {
		return fmt.Errorf("-bytes %d over -conns %d leaves nothing per connection", cfg.nbytes, conns)
	}
	transferLimit := throughputTransferLimit(cfg)
	for i := 0; i < cfg.repeat; i++ {
		ss, err := openThroughputSessions(e, conns)
		res.ConnsOpen = len(ss)
		if err != nil {
			closeSessions(ss)
			err = fmt.Errorf("run %d: opened %d of %d: %w", i+1, len(ss), conns, err)
			res.Errors.add(err)
			return err
		}
		deadline := time.Now().Add(transferLimit)
		for _, s := range ss {
			_ = s.conn.SetDeadline(deadline)
		}
		meter, side := startCPU(e.proxyPID), startSide(e)
		start := time.Now()
		err = transferAll(ss, cfg, per)
		elapsed := time.Since(start)
		pct := meter.percent()
		side.record(e)
		closeSessions(ss)
		if err != nil {
			err = fmt.Errorf("run %d: %w", i+1, err)
			res.Errors.add(err)
			return err
		}
		mbps = append(mbps, float64(per*int64(conns))/elapsed.Seconds()/1e6)
		if pct >= 0 {
			cpu = append(cpu, pct)
		}
		if err := proxyAlive(e); err != nil {
			return err
		}
	}
	return nil
}

// openThroughputSessions opens n sessions, a few at a time; on the first
// failure it returns the ones opened so far and the error.
func openThroughputSessions(e *env, n int) ([]*session, error) {
	var (
		mu    sync.Mutex
		ss    []*session
		first error
		wg    sync.WaitGroup
	)
	next := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		next <- struct{}{}
	}
	close(next)
	for w := 0; w < min(n, throughputOpenParallel); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				mu.Lock()
				failed := first != nil
				mu.Unlock()
				if failed {
					return
				}
				s, err := e.client.open(background)
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
				} else {
					ss = append(ss, s)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ss, first
}

// transferAll runs one transfer of per bytes on every session at once and
// returns the first error.
func transferAll(ss []*session, cfg *settings, per int64) error {
	errs := make([]error, len(ss))
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = transferOne(s, cfg, per)
			if errs[i] != nil {
				// Unblock the others at once (the run has failed anyway):
				// a plain close, no close frame that could wait on a write.
				for _, o := range ss {
					o.conn.Close()
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			if len(ss) > 1 {
				err = fmt.Errorf("connection %d of %d: %w", i+1, len(ss), err)
			}
			return err
		}
	}
	return nil
}

func transferOne(s *session, cfg *settings, n int64) error {
	if cfg.dir == "down" {
		if err := s.send(s.frame([]byte{'g'})); err != nil {
			return err
		}
		return s.discard(n, make([]byte, 256<<10))
	}
	if err := sendUp(s, n, cfg.frameSize); err != nil {
		return err
	}
	var ack [1]byte
	return s.readFull(ack[:])
}

// closeSessions says goodbye on every session.
func closeSessions(ss []*session) {
	for _, s := range ss {
		s.close()
	}
}

// sendUp writes n payload bytes as frames of frameSize. The frame is built
// once and written again and again: its content is irrelevant to the sink,
// and the client spends no time masking.
func sendUp(s *session, n int64, frameSize int) error {
	payload := make([]byte, frameSize)
	full := s.frame(payload)
	for n >= int64(frameSize) {
		if err := s.send(full); err != nil {
			return err
		}
		n -= int64(frameSize)
	}
	if n > 0 {
		return s.send(s.frame(payload[:n]))
	}
	return nil
}

func proxyAlive(e *env) error {
	if e.proxy == nil {
		return nil
	}
	return e.proxy.alive()
}

// throughputConns is -conns, at least 1.
func throughputConns(cfg *settings) int {
	return max(cfg.conns, 1)
}

// targetBytes is what the byte source sends, or the sink counts before its
// ack, on each connection.
func targetBytes(cfg *settings) int64 {
	if cfg.mode != "throughput" {
		return cfg.nbytes
	}
	return cfg.nbytes / int64(throughputConns(cfg))
}

// throughputTransferLimit bounds one run's transfer generously: below
// 10 MB/s on one connection a proxy is broken, not slow. Over many
// connections the floor is 1 MB/s: Python's forked children have been seen
// near that on a busy machine.
func throughputTransferLimit(cfg *settings) time.Duration {
	floor := 10e6
	if throughputConns(cfg) > 1 {
		floor = 1e6
	}
	return cfg.opTimeout + time.Duration(float64(cfg.nbytes)/floor)*time.Second
}

// throughputRunLimit bounds one whole run, opening its sessions included
// (each opening step has its own -op-timeout).
func throughputRunLimit(cfg *settings) time.Duration {
	waves := (throughputConns(cfg) + throughputOpenParallel - 1) / throughputOpenParallel
	return time.Duration(waves)*cfg.opTimeout + throughputTransferLimit(cfg)
}
