package main

import (
	"strings"
	"testing"
	"time"
)

// openLoopResult is an openloop result whose latencies at each rate are
// the given values.
func openLoopResult(label, commit, at string, round int, lat map[float64][]time.Duration) *Result {
	r := &Result{Mode: "openloop", Label: label, Commit: commit, Time: at, Round: round, ConnsOpen: 200, ConnsWanted: 200, MsgBytes: 64}
	for _, rate := range []float64{1000, 2000} {
		ds, ok := lat[rate]
		if !ok {
			continue
		}
		r.OpenLoop = append(r.OpenLoop, openLoopStep{OfferedPerSec: rate, Seconds: 5, WarmupSeconds: 1, Sent: int64(len(ds)),
			Received: int64(len(ds)), Latency: summarizeDurations(ds), FromSend: summarizeDurations(ds), SendLag: summarizeDurations(ds[:1])})
	}
	return r
}

func repeatDur(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestOpenLoopReport(t *testing.T) {
	// Ours: two runs; the first has 4% of its messages at 30 ms, 2% of
	// both runs' messages, so the merged p99 is there; the relay is at
	// 100 µs throughout. Percentiles are bucket tops: 300 µs reads 303 µs.
	slow := append(repeatDur(300*time.Microsecond, 960), repeatDur(30*time.Millisecond, 40)...)
	rs := resultSet{
		openLoopResult("ours", "old", "2026-01-01T00:00:00Z", 1, map[float64][]time.Duration{1000: repeatDur(9*time.Second, 10)}),
		openLoopResult("ours", "c1", "2026-02-01T00:00:00Z", 1, map[float64][]time.Duration{1000: slow, 2000: repeatDur(time.Millisecond, 100)}),
		openLoopResult("relay", "c1", "2026-02-01T00:00:01Z", 1, map[float64][]time.Duration{1000: repeatDur(100*time.Microsecond, 1000)}),
		openLoopResult("ours", "c1", "2026-02-01T00:00:02Z", 2, map[float64][]time.Duration{1000: repeatDur(300*time.Microsecond, 1000)}),
	}
	var b strings.Builder
	writeOpenLoop(&b, rs, "ours")
	out := b.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"### Latency at a fixed offered rate",
		"| 1,000/s | ours | 2 | 200 | 303 µs | 303 µs | 30.00 ms | 30.00 ms | 30.00 ms | 30.00 ms, 300 µs |", // 2000 messages in 2×5 s; never above the largest value
		"| 1,000/s | relay | 1 | 200 | 100 µs |",
		"| 2,000/s | ours | 1 |",
		"| 300.00x |", // both at their largest value
		"| 100 µs – 200 µs |", "| 200 µs – 500 µs |", "| 20.00 ms – 50.00 ms |",
		"| 1,000/s ours | 1,000/s relay | 2,000/s ours |",
		"| 100 µs – 200 µs |  | 100.0% ██████████ |", "98.0% ██████████", "2.0% ▏",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q", want)
		}
	}
	if strings.Contains(out, "9.00 s") || strings.Contains(out, "`old`") {
		t.Error("the run from an older build was not left out")
	}
}
