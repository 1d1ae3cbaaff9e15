package main

import (
	"math"
	"math/bits"
)

// histogram counts non-negative values (nanoseconds here) in log-linear
// buckets, the layout HdrHistogram uses: values below histSub have a bucket
// each; above, every power of two is split into histHalf buckets of equal
// width, so a bucket is at most 1/histHalf (1.6%) of its values wide. The
// whole distribution is kept in a fixed array, so percentiles of merged runs
// stay exact to a bucket, which averaging per-run percentiles would not.
type histogram struct {
	counts [histBuckets]int64
	total  int64
	min    int64
	max    int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // values below have a bucket each
	histHalf    = histSub / 2      // buckets per power of two above
	histBuckets = histSub + (63-histSubBits)*histHalf
)

// histIndex is the bucket of v (v >= 0).
func histIndex(v int64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits // >= 1
	top := int(v >> shift)                       // histHalf .. histSub-1
	return histSub + (shift-1)*histHalf + top - histHalf
}

// histBounds is bucket i's range of values, [lo, hi).
func histBounds(i int) (lo, hi int64) {
	if i < histSub {
		return int64(i), int64(i) + 1
	}
	shift := (i-histSub)/histHalf + 1
	top := int64((i-histSub)%histHalf + histHalf)
	return top << shift, (top + 1) << shift
}

func (h *histogram) record(v int64) {
	v = max(v, 0)
	if h.total == 0 || v < h.min {
		h.min = v
	}
	h.max = max(h.max, v)
	h.counts[histIndex(v)]++
	h.total++
}

// addBucket counts n values in the bucket holding lo, leaving the minimum
// and maximum to the caller (rebuilding a histogram from its JSON).
func (h *histogram) addBucket(lo, n int64) {
	if n > 0 {
		h.counts[histIndex(max(lo, 0))] += n
		h.total += n
	}
}

// quantile is the value at quantile q (0..1), nearest rank: the top of the
// bucket holding it (never above the largest value recorded), so a reported
// percentile is never better than the truth by more than a bucket.
func (h *histogram) quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	rank := max(1, int64(math.Ceil(q*float64(h.total))))
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := histBounds(i)
			return min(max(hi-1, h.min), h.max)
		}
	}
	return h.max
}

// histSummary is a histogram as a result records it: percentiles in
// microseconds and every non-empty bucket, enough to merge runs later.
// Buckets are [lo, n] pairs: n values from lo nanoseconds up to the next
// bucket of the layout (histBounds), which is at most 1.6% higher; a
// percentile is the top of its bucket, capped at the maximum.
type histSummary struct {
	Count   int64      `json:"count"`
	MinUs   float64    `json:"min_us"`
	P50us   float64    `json:"p50_us"`
	P90us   float64    `json:"p90_us"`
	P99us   float64    `json:"p99_us"`
	P999us  float64    `json:"p99_9_us"`
	MaxUs   float64    `json:"max_us"`
	Buckets [][2]int64 `json:"buckets"`
}

func nsToUs(v int64) float64 { return float64(v) / 1e3 }

func (h *histogram) summary() *histSummary {
	s := &histSummary{Count: h.total, MinUs: nsToUs(h.min), MaxUs: nsToUs(h.max),
		P50us: nsToUs(h.quantile(0.5)), P90us: nsToUs(h.quantile(0.9)),
		P99us: nsToUs(h.quantile(0.99)), P999us: nsToUs(h.quantile(0.999))}
	for i, c := range h.counts {
		if c > 0 {
			lo, _ := histBounds(i)
			s.Buckets = append(s.Buckets, [2]int64{lo, c})
		}
	}
	return s
}

// merge adds a recorded summary's buckets to h; the exact minimum and
// maximum are kept from the summary.
func (h *histogram) merge(s *histSummary) {
	if s == nil || s.Count == 0 {
		return
	}
	first := h.total == 0
	for _, b := range s.Buckets {
		h.addBucket(b[0], b[1])
	}
	lo, hi := int64(math.Round(s.MinUs*1e3)), int64(math.Round(s.MaxUs*1e3))
	if first {
		h.min, h.max = lo, hi
	} else {
		h.min, h.max = min(h.min, lo), max(h.max, hi)
	}
}
