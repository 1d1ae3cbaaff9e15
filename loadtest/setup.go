package main

import (
	"errors"
	"slices"
	"sync"
	"time"
)

// runSetup measures connection churn: cfg.concurrency workers each loop over
// dial, handshake, one echo byte, close. A session counts when its echo byte
// came back; the rate is counted per window of cfg.duration.
func runSetup(e *env) error {
	cfg, res := e.cfg, e.result
	res.Concurrency = cfg.concurrency
	res.WindowSeconds = cfg.duration.Seconds()
	windows := cfg.repeat
	start := time.Now()
	end := start.Add(time.Duration(windows) * cfg.duration)

	type workerStats struct {
		lat  [][]time.Duration // per window, by start time
		errs errorTally
	}
	stats := make([]workerStats, cfg.concurrency)
	cpuDone := make(chan [2][]float64, 1)
	go func() {
		var pcts, backend []float64 // per window: the proxy's, the backend's
		for w := 0; w < windows; w++ {
			m, b, side := startCPU(e.proxyPID), startCPU(cfg.backendPID), startSide(e)
			time.Sleep(time.Until(start.Add(time.Duration(w+1) * cfg.duration)))
			side.record(e)
			if p := m.percent(); p >= 0 {
				pcts = append(pcts, p)
			}
			if p := b.percent(); p >= 0 {
				backend = append(backend, p)
			}
		}
		cpuDone <- [2][]float64{pcts, backend}
	}()
	one := []byte{'x'}
	var wg sync.WaitGroup
	for i := range stats {
		wg.Add(1)
		go func(st *workerStats) {
			defer wg.Done()
			st.lat = make([][]time.Duration, windows)
			got := make([]byte, 1)
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				err := oneSession(e, one, got)
				if err != nil {
					st.errs.add(err)
					// Refused or reset connections fail fast; do not spin.
					time.Sleep(10 * time.Millisecond)
					continue
				}
				// A session counts in the window where it ended, so a
				// window's count over its length is a rate.
				done := time.Now()
				if w := int(done.Sub(start) / cfg.duration); w < windows {
					st.lat[w] = append(st.lat[w], done.Sub(t0))
				}
			}
		}(&stats[i])
	}
	wg.Wait()
	cpu := <-cpuDone

	var rate, p50, p99 []float64
	for w := 0; w < windows; w++ {
		var all []time.Duration
		for i := range stats {
			all = append(all, stats[i].lat[w]...)
		}
		slices.Sort(all)
		res.Sessions += int64(len(all))
		rate = append(rate, float64(len(all))/cfg.duration.Seconds())
		if len(all) > 0 {
			p50 = append(p50, micros(percentile(all, 0.50)))
			p99 = append(p99, micros(percentile(all, 0.99)))
		}
	}
	for i := range stats {
		res.Errors.merge(stats[i].errs)
	}
	res.SessionsPerSec, res.SetupP50us, res.SetupP99us = newSpread(rate), newSpread(p50), newSpread(p99)
	res.ProxyCPU, res.BackendCPU = newSpread(cpu[0]), newSpread(cpu[1])
	if res.Sessions == 0 {
		return errors.New("no session completed")
	}
	return nil
}

// oneSession is a whole short session: open, one byte there and back, close.
func oneSession(e *env, one, got []byte) error {
	s, err := e.client.open(background)
	if err != nil {
		return err
	}
	defer s.close()
	return s.roundTrip(s.frame(one), one, got)
}
