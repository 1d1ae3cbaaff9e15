package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"
)

// The schedule is one evenly spaced sequence over all sessions, a function
// of the start time alone, and messagesDue counts exactly the messages it
// puts before a time.
func TestOpenLoopSchedule(t *testing.T) {
	start := time.Unix(1000, 0)
	const rate, n = 2000.0, 7
	var all []time.Time
	d := 1234567 * time.Microsecond
	for i := range n {
		due := messagesDue(rate, n, i, d)
		for k := int64(0); ; k++ {
			at := scheduleAt(start, rate, n, i, k)
			if !at.Before(start.Add(d)) {
				if k != due {
					t.Fatalf("session %d: %d messages before %v, messagesDue says %d", i, k, d, due)
				}
				break
			}
			all = append(all, at)
		}
	}
	if want := int(math.Ceil(d.Seconds() * rate)); len(all) != want {
		t.Fatalf("%d messages due in %v at %g/s, want %d", len(all), d, rate, want)
	}
	slices.SortFunc(all, func(a, b time.Time) int { return a.Compare(b) })
	gap := time.Duration(float64(time.Second) / rate)
	for j := 1; j < len(all); j++ {
		if g := all[j].Sub(all[j-1]); g < gap-time.Microsecond || g > gap+time.Microsecond {
			t.Fatalf("gap %v between messages %d and %d, want %v", g, j-1, j, gap)
		}
	}
	if messagesDue(rate, n, 3, 0) != 0 || messagesDue(rate, n, 0, time.Nanosecond) != 1 {
		t.Fatal("the first message of session 0 is due at the start, none before")
	}
}

// A proxy that stops for a while: the messages due meanwhile still count
// from when they were due, so the stall shows in the tail in proportion to
// its length. A closed loop would charge it to one message per session.
func TestOpenLoopTimesFromSchedule(t *testing.T) {
	const stall = 400 * time.Millisecond
	cfg := &settings{mode: "openloop", relay: true, target: "127.0.0.1:0", opTimeout: 20 * time.Second,
		rampTimeout: 30 * time.Second, dialParallel: 8, maxFail: 5, conns: 20, msgSize: 64, duration: 1500 * time.Millisecond,
		openLoop: openLoopSettings{rates: rateList{1000}, warmup: 200 * time.Millisecond}}
	defer runCleanups()
	e, res := setUpMode(t, cfg)
	// Stop the relay from 300 ms into the recorded window for stall.
	openLoopStepStarted = func(start time.Time) {
		go func() {
			time.Sleep(time.Until(start.Add(cfg.openLoop.warmup + 300*time.Millisecond)))
			_ = syscall.Kill(e.proxyPID, syscall.SIGSTOP)
			time.Sleep(stall)
			_ = syscall.Kill(e.proxyPID, syscall.SIGCONT)
		}()
	}
	defer func() { openLoopStepStarted = nil }()
	if err := runModeOn(e, cfg.mode); err != nil {
		t.Fatalf("%v (%s)", err, summarize(res))
	}
	t.Log(summarize(res))
	st := res.OpenLoop[0]
	if st.Sent != 1500 || st.Received != 1500 || st.Lost != 0 {
		t.Fatalf("sent %d, received %d, lost %d; want all 1500 due in the window", st.Sent, st.Received, st.Lost)
	}
	// Messages due in the first 300 ms of the stall waited at least 100 ms:
	// 300 of 1500 is 20%, so the 90th percentile is past 100 ms.
	if st.Latency.P90us < 100e3 {
		t.Fatalf("p90 %v µs: the stall did not count from the schedule", st.Latency.P90us)
	}
	if st.Latency.MaxUs < 0.8*float64(stall.Microseconds()) || st.Latency.MaxUs > 5e6 {
		t.Fatalf("max %v µs, want about the %v stall", st.Latency.MaxUs, stall)
	}
	if st.Latency.P50us > 100e3 {
		t.Fatalf("p50 %v µs: most messages were not due during the stall", st.Latency.P50us)
	}
}

// A proxy that stops for longer than the op timeout: the run still ends in
// time, with the messages due meanwhile counted as lost and every session
// out of later steps, not hung or dropped silently.
func TestOpenLoopCountsLostOnStall(t *testing.T) {
	cfg := &settings{mode: "openloop", relay: true, target: "127.0.0.1:0", opTimeout: 500 * time.Millisecond,
		rampTimeout: 30 * time.Second, dialParallel: 8, maxFail: 5, conns: 10, msgSize: 64, duration: time.Second,
		openLoop: openLoopSettings{rates: rateList{500, 1000}}}
	defer runCleanups()
	e, res := setUpMode(t, cfg)
	openLoopStepStarted = func(start time.Time) {
		time.AfterFunc(time.Until(start.Add(500*time.Millisecond)), func() { _ = syscall.Kill(e.proxyPID, syscall.SIGSTOP) })
	}
	defer func() {
		openLoopStepStarted = nil
		_ = syscall.Kill(e.proxyPID, syscall.SIGCONT)
	}()
	began := time.Now()
	err := runModeOn(e, cfg.mode)
	t.Log(summarize(res))
	if err != nil {
		t.Fatal(err) // the first step echoed something before the stop
	}
	if el := time.Since(began); el > 10*time.Second {
		t.Fatalf("took %v", el)
	}
	st := res.OpenLoop[0]
	if st.Received < 100 || st.Received > 300 || st.Lost != 500-st.Received || res.ConnsLost != 10 || res.Errors.total() != 10 {
		t.Fatalf("received %d, lost %d of 500; %d sessions lost, %d errors", st.Received, st.Lost, res.ConnsLost, res.Errors.total())
	}
	if res.OpenLoop[1].Sent != 0 || res.OpenLoop[1].Latency != nil {
		t.Fatalf("the second step ran on broken sessions: %+v", res.OpenLoop[1])
	}
}

func TestOpenLoopRatesFlag(t *testing.T) {
	var l rateList
	if err := l.Set("1k, 2.5k,300"); err != nil || !slices.Equal(l, rateList{1000, 2500, 300}) {
		t.Fatalf("%v %v", l, err)
	}
	for _, bad := range []string{"", "0", "-5", "x", "1k,", "2000k"} {
		if err := l.Set(bad); err == nil {
			t.Errorf("-rates %q accepted", bad)
		}
	}
}

// Buckets tile the values without gaps, each at most 1/64 of its values
// wide, and a value lands in the bucket whose bounds hold it.
func TestHistogramBuckets(t *testing.T) {
	_, prevHi := histBounds(0)
	for i := 1; i < histBuckets; i++ {
		lo, hi := histBounds(i)
		if lo != prevHi {
			t.Fatalf("bucket %d starts at %d, the one before ends at %d", i, lo, prevHi)
		}
		if lo >= histSub && float64(hi-lo)/float64(lo) > 1.0/histHalf {
			t.Fatalf("bucket %d [%d, %d) too wide", i, lo, hi)
		}
		prevHi = hi
		if hi < 0 { // past int64
			break
		}
	}
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 65535, 1e6, 1e9, 3.6e12, math.MaxInt64 / 2} {
		i := histIndex(v)
		if lo, hi := histBounds(i); v < lo || v >= hi {
			t.Fatalf("%d in bucket %d [%d, %d)", v, i, lo, hi)
		}
	}
}

// Percentiles of known distributions, within the bucket width above the
// exact nearest-rank value and never below it; the same after a round trip
// through the recorded summary.
func TestHistogramPercentiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() int64{
		"uniform 1..100000": func() int64 { return 1 + r.Int64N(100000) },
		"exponential 50µs":  func() int64 { return int64(r.ExpFloat64() * 50e3) },
		"small exact":       func() int64 { return r.Int64N(100) },
	}
	for name, draw := range dists {
		var h histogram
		vals := make([]int64, 100000)
		for i := range vals {
			vals[i] = draw()
			h.record(vals[i])
		}
		slices.Sort(vals)
		var back histogram
		back.merge(h.summary())
		for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
			exact := vals[max(0, int(math.Ceil(q*float64(len(vals))))-1)]
			for _, hh := range []*histogram{&h, &back} {
				got := hh.quantile(q)
				if got < exact || float64(got) > float64(exact)*(1+1.0/histHalf)+1 {
					t.Errorf("%s: q%g = %d, exact %d", name, q, got, exact)
				}
			}
		}
		if h.quantile(1) != vals[len(vals)-1] || h.min != vals[0] {
			t.Errorf("%s: min %d max %d, want %d %d", name, h.min, h.quantile(1), vals[0], vals[len(vals)-1])
		}
		if name == "uniform 1..100000" {
			if p := h.summary().P50us; math.Abs(p-50) > 50.0/histHalf {
				t.Errorf("uniform p50 %v µs, want 50 µs", p)
			}
		}
	}
	// Merging two summaries is the histogram of both.
	var a, b, both, merged histogram
	for i := int64(0); i < 5000; i++ {
		a.record(i * 100)
		b.record(i*7 + 3)
		both.record(i * 100)
		both.record(i*7 + 3)
	}
	merged.merge(a.summary())
	merged.merge(b.summary())
	if merged.counts != both.counts || merged.total != both.total || merged.min != both.min || merged.max != both.max {
		t.Fatal("merged summaries differ from the histogram of all values")
	}
}
