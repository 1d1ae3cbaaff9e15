package main

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// The soak's memory: the proxy tree's RSS sampled through the run (summed
// over --workers children or forked ones), kept as a series for the result,
// and judged for a steady climb.

// rssSample is one reading of the proxy tree's RSS, T seconds into the run.
type rssSample struct {
	T   float64 `json:"t"`
	RSS int64   `json:"rss"`
}

// memPeak samples the proxy tree's memory in the background.
type memPeak struct {
	pid       int
	start     time.Time
	mu        sync.Mutex
	rss, priv int64
	last      int64 // the latest RSS reading
	series    []rssSample
	quit      chan struct{}
	done      chan struct{}
}

func startMemPeak(pid int, every time.Duration) *memPeak {
	m := &memPeak{pid: pid, start: time.Now(), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.quit:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memPeak) sample() {
	if m.pid == 0 {
		return
	}
	s := treeMemory(m.pid)
	if s.Procs == 0 {
		return // the proxy is gone: no reading, rather than a zero
	}
	m.mu.Lock()
	m.rss, m.priv = max(m.rss, s.RSS), max(m.priv, s.PrivateDirty)
	m.last = s.RSS
	t := math.Round(time.Since(m.start).Seconds()*1000) / 1000 // ms: enough, and the JSON stays short
	m.series = append(m.series, rssSample{T: t, RSS: s.RSS})
	m.mu.Unlock()
}

func (m *memPeak) rssNowAndPeak() (int64, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, m.rss
}

// stop ends the sampling; the series then holds every reading.
func (m *memPeak) stop() (rss, privateDirty int64) {
	close(m.quit)
	<-m.done
	m.sample()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rss, m.priv
}

func (m *memPeak) samples() []rssSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.series)
}

// RSS judge defaults: the warm-up left out of the fit is the first
// rssWarmupShare of the run, at most rssWarmupMax; the growth allowed is the
// larger of rssGrowthShare of the median and rssGrowthFloor.
const (
	rssWarmupShare = 0.2
	rssWarmupMax   = 2 * time.Minute
	rssGrowthShare = 0.10
	rssGrowthFloor = 8 << 20
	rssMinSamples  = 8
)

// rssVerdict is the judgement of the RSS series. The growth is the fitted
// line's rise from the first post-warm-up sample to the last; the run fails
// when it exceeds the bound and the median of the last quarter of those
// samples is above the first quarter's by more than half the bound, so
// neither a noisy line nor a spike at the end fails it.
type rssVerdict struct {
	WarmupS         float64 `json:"warmup_s"`             // samples before this are left out
	Samples         int     `json:"samples"`              // samples fitted
	SlopeBytesPerS  float64 `json:"slope_bytes_per_s"`    // least-squares slope
	R2              float64 `json:"r2"`                   // of the fit
	GrowthBytes     float64 `json:"growth_bytes"`         // slope × the fitted span
	MedianBytes     int64   `json:"median_bytes"`         // of the fitted samples
	FirstQuarterMed int64   `json:"first_quarter_median"` // of the fitted samples
	LastQuarterMed  int64   `json:"last_quarter_median"`
	BoundBytes      float64 `json:"bound_bytes"` // growth allowed
	Climbing        bool    `json:"climbing"`    // the verdict: a steady climb
	Verdict         string  `json:"verdict"`
}

// judgeRSS judges the series of a run of length dur; bound <= 0 picks the
// default bound. Nil when there are too few samples to say anything.
func judgeRSS(series []rssSample, dur time.Duration, bound float64) *rssVerdict {
	warm := min(time.Duration(float64(dur)*rssWarmupShare), rssWarmupMax)
	var xs, ys []float64
	var vals []int64
	for _, s := range series {
		if s.T >= warm.Seconds() && s.T <= dur.Seconds() {
			xs, ys = append(xs, s.T), append(ys, float64(s.RSS))
			vals = append(vals, s.RSS)
		}
	}
	v := &rssVerdict{WarmupS: warm.Seconds(), Samples: len(xs)}
	l, ok := fitLine(xs, ys)
	if len(xs) < rssMinSamples || !ok {
		v.Verdict = fmt.Sprintf("not judged: %d samples after the %.0f s warm-up, %d needed", len(xs), warm.Seconds(), rssMinSamples)
		return v
	}
	q := len(vals) / 4
	v.MedianBytes = median(vals)
	v.FirstQuarterMed, v.LastQuarterMed = median(vals[:q]), median(vals[len(vals)-q:])
	v.SlopeBytesPerS, v.R2 = l.slope, l.r2
	v.GrowthBytes = l.slope * (xs[len(xs)-1] - xs[0])
	v.BoundBytes = bound
	if bound <= 0 {
		v.BoundBytes = max(rssGrowthShare*float64(v.MedianBytes), rssGrowthFloor)
	}
	v.Climbing = v.GrowthBytes > v.BoundBytes && float64(v.LastQuarterMed-v.FirstQuarterMed) > v.BoundBytes/2
	word := "flat"
	if v.Climbing {
		word = "CLIMBING"
	}
	v.Verdict = fmt.Sprintf("%s: fitted growth %+.1f MiB over %.0f s (%.2f MiB/min, R² %.2f), bound %.1f MiB; median first quarter %.1f MiB, last %.1f MiB",
		word, v.GrowthBytes/(1<<20), xs[len(xs)-1]-xs[0], v.SlopeBytesPerS*60/(1<<20), v.R2, v.BoundBytes/(1<<20),
		float64(v.FirstQuarterMed)/(1<<20), float64(v.LastQuarterMed)/(1<<20))
	return v
}

// median of vals (not modified); 0 when empty.
func median(vals []int64) int64 {
	if len(vals) == 0 {
		return 0
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	return s[len(s)/2]
}
