package main

import (
	"fmt"
	"time"
)

// runThroughput moves cfg.nbytes over one connection, cfg.repeat times, each
// on a fresh connection. The clock runs at the client: for "down" from the
// go byte until the last byte is read, for "up" from the first frame until
// the target's ack comes back, so both include the proxy's last hop.
func runThroughput(e *env) error {
	cfg, res := e.cfg, e.result
	res.Dir, res.Bytes = cfg.dir, cfg.nbytes
	if cfg.dir == "up" && !e.client.raw {
		res.FrameBytes = cfg.frameSize
	}
	var mbps, cpu []float64
	defer func() {
		res.MBps = newSpread(mbps)
		res.ProxyCPU = newSpread(cpu)
	}()
	runLimit := throughputRunLimit(cfg)
	scratch := make([]byte, 256<<10)
	for i := 0; i < cfg.repeat; i++ {
		s, err := e.client.open(background)
		if err != nil {
			res.Errors.add(err)
			return err
		}
		_ = s.conn.SetDeadline(time.Now().Add(runLimit))
		meter := startCPU(e.proxyPID)
		start := time.Now()
		if cfg.dir == "down" {
			err = s.send(s.frame([]byte{'g'}))
			if err == nil {
				err = s.discard(cfg.nbytes, scratch)
			}
		} else {
			err = sendUp(s, cfg.nbytes, cfg.frameSize)
			if err == nil {
				var ack [1]byte
				err = s.readFull(ack[:])
			}
		}
		elapsed := time.Since(start)
		pct := meter.percent()
		s.close()
		if err != nil {
			err = fmt.Errorf("run %d: %w", i+1, err)
			res.Errors.add(err)
			return err
		}
		mbps = append(mbps, float64(cfg.nbytes)/elapsed.Seconds()/1e6)
		if pct >= 0 {
			cpu = append(cpu, pct)
		}
		if err := proxyAlive(e); err != nil {
			return err
		}
	}
	return nil
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

// throughputRunLimit bounds one run generously: below 10 MB/s a proxy is
// broken, not slow.
func throughputRunLimit(cfg *settings) time.Duration {
	return cfg.opTimeout + time.Duration(cfg.nbytes/10e6)*time.Second
}
