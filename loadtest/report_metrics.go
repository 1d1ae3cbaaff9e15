package main

import (
	"fmt"
	"slices"
	"strings"
)

// The report's section on the cost of --metrics-listen: our proxy without
// metrics and with them, scraped every second, measured in interleaved
// rounds (bench/run.sh passes -round): session set-up and one-connection
// throughput each way, each round's figure with metrics over the one
// without in the same round.

// targetMetricsRatio is the least figure with metrics on, over the figure
// with them off in the same round.
const targetMetricsRatio = 0.97

// metricsMeasure is one figure the metrics rounds compare.
type metricsMeasure struct {
	what, mode, dir string
	get             func(*Result) *Spread
	format          func(float64) string
}

var metricsMeasures = []metricsMeasure{
	{"sessions set up per second", "setup", "", func(r *Result) *Spread { return r.SessionsPerSec }, fmtFloat(0)},
	{"throughput down, one connection, MB/s", "throughput", "down", func(r *Result) *Spread { return r.MBps }, fmtFloat(0)},
	{"throughput up, one connection, MB/s", "throughput", "up", func(r *Result) *Spread { return r.MBps }, fmtFloat(0)},
}

// metricsRounds is label's runs of m by round (the latest run of each).
func metricsRounds(rs resultSet, label string, m metricsMeasure) map[int]*Result {
	out := map[int]*Result{}
	for _, r := range rs {
		if r.Label == label && r.Mode == m.mode && r.Dir == m.dir && isRoundRun(r) {
			out[r.Round] = r
		}
	}
	return out
}

// metricsRatios is, for every round both measured m in, the median with
// metrics over the median without; and the runs it used.
func metricsRatios(rs resultSet, ours string, m metricsMeasure) (ratios []float64, runs []*Result) {
	off, on := metricsRounds(rs, ours+"-metrics-off", m), metricsRounds(rs, ours+"-metrics-on", m)
	var rounds []int
	for n := range on {
		rounds = append(rounds, n)
	}
	slices.Sort(rounds)
	for _, n := range rounds {
		a, b := on[n], off[n]
		if b == nil || m.get(a) == nil || m.get(b) == nil || m.get(b).Median == 0 {
			continue
		}
		ratios = append(ratios, m.get(a).Median/m.get(b).Median)
		runs = append(runs, a, b)
	}
	return ratios, runs
}

func writeMetricsCost(b *strings.Builder, rs resultSet, ours string) {
	b.WriteString("### Cost of --metrics-listen\n\n")
	var all []*Result
	for _, m := range metricsMeasures {
		_, runs := metricsRatios(rs, ours, m)
		all = append(all, runs...)
	}
	if len(all) == 0 {
		b.WriteString("Not measured yet.\n\n")
		return
	}
	fmt.Fprintf(b, "Our proxy without metrics (label %s-metrics-off) and with `--metrics-listen` (%s-metrics-on), scraped every second "+
		"for the whole of each run as Prometheus would (bench/results/ours-metrics-scrapes.txt counts the scrapes answered; "+
		"the same scraper runs without metrics too, against a port nothing listens on, so that its own cost falls on both), "+
		"in interleaved rounds, the order turning each round, so that drift in the machine's load falls on both alike. "+
		"Each round measures session set-up as in \"Session set-up rate\", then one-connection throughput each way. "+
		"**on / off** is a round's median with metrics over the median without, in the same round: the median over the rounds and the worst round. "+
		"The figures are the median [min–max] over every window or run of every round.\n\n", ours, ours)
	writeMeasuredOn(b, all)
	b.WriteString("| measure | rounds | metrics off | metrics on | on / off, median of rounds | worst round | every round | proxy CPU %, off | proxy CPU %, on |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range metricsMeasures {
		ratios, runs := metricsRatios(rs, ours, m)
		if len(ratios) == 0 {
			fmt.Fprintf(b, "| %s | not measured yet | | | | | | | |\n", m.what)
			continue
		}
		var off, on []*Result
		for i, r := range runs {
			if i%2 == 0 {
				on = append(on, r)
			} else {
				off = append(off, r)
			}
		}
		q := newSpread(ratios)
		fmt.Fprintf(b, "| %s | %d | %s | %s | %.3f | %.3f | %s | %s | %s |\n", m.what, len(ratios),
			pooled(off, m.get).format(m.format), pooled(on, m.get).format(m.format),
			q.Median, q.Min, fmtRatios3(q.Samples),
			pooled(off, func(r *Result) *Spread { return r.ProxyCPU }).format(fmtFloat(0)),
			pooled(on, func(r *Result) *Spread { return r.ProxyCPU }).format(fmtFloat(0)))
	}
	b.WriteString("\n")
}

func fmtRatios3(qs []float64) string {
	parts := make([]string, len(qs))
	for i, q := range qs {
		parts[i] = fmt.Sprintf("%.3f", q)
	}
	return strings.Join(parts, ", ")
}

// metricsVerdicts adds a Targets row per figure: with metrics over without,
// same rounds, judged by the median round.
func metricsVerdicts(v verdicts, rs resultSet, ours string) {
	for _, m := range metricsMeasures {
		name := fmt.Sprintf("%s with --metrics-listen (scraped every second) ≥ %.2f × without, same rounds", m.what, targetMetricsRatio)
		ratios, runs := metricsRatios(rs, ours, m)
		q := newSpread(ratios)
		if q == nil {
			v.row(name, "", false, false)
			continue
		}
		value := fmt.Sprintf("%.3f × without (median of %s; worst %.3f)", q.Median, plural(len(q.Samples), "round"), q.Min)
		v.row(name, value, q.Median >= targetMetricsRatio, true, runs...)
	}
}
