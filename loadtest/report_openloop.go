package main

import (
	"fmt"
	"slices"
	"strings"
)

// openLoopRuns is one label's openloop runs from its latest build, merged
// per offered rate.
type openLoopRuns struct {
	label  string
	runs   []*Result
	rates  []float64                // offered rates, in the order first run
	steps  map[float64]*openLoopAgg // by offered rate
	commit string
}

// openLoopAgg is one offered rate over every run: the histograms merged,
// so percentiles are of all messages, not averages of per-run percentiles.
type openLoopAgg struct {
	lat, fromSend, lag histogram
	sent, lost         int64
	seconds            float64
	cpu                []float64
	p99s               []float64 // per run, to show how far rounds differ
	rounds             int
}

// openLoopOf collects label's openloop runs. Runs from other builds than
// the latest one are left out (a smoke run, an older bench), so the rows
// never mix builds.
func openLoopOf(rs resultSet, label string) *openLoopRuns {
	var runs []*Result
	for _, r := range rs {
		if r.Mode == "openloop" && r.Label == label && len(r.OpenLoop) > 0 {
			runs = append(runs, r)
		}
	}
	if len(runs) == 0 {
		return nil
	}
	latest := runs[0]
	for _, r := range runs {
		if r.Time >= latest.Time {
			latest = r
		}
	}
	o := &openLoopRuns{label: label, steps: map[float64]*openLoopAgg{}, commit: latest.Commit}
	for _, r := range runs {
		if r.Commit != latest.Commit {
			continue
		}
		o.runs = append(o.runs, r)
		for _, st := range r.OpenLoop {
			a := o.steps[st.OfferedPerSec]
			if a == nil {
				a = &openLoopAgg{}
				o.steps[st.OfferedPerSec] = a
				o.rates = append(o.rates, st.OfferedPerSec)
			}
			a.lat.merge(st.Latency)
			a.fromSend.merge(st.FromSend)
			a.lag.merge(st.SendLag)
			a.sent += st.Sent
			a.lost += st.Lost
			a.seconds += st.Seconds
			a.rounds++
			if st.ProxyCPU > 0 {
				a.cpu = append(a.cpu, st.ProxyCPU)
			}
			if st.Latency != nil {
				a.p99s = append(a.p99s, st.Latency.P99us)
			}
		}
	}
	slices.Sort(o.rates)
	return o
}

func histUs(h *histogram, q float64) float64 { return nsToUs(h.quantile(q)) }

// latencyBands are the bounds of the text histogram's rows, in µs.
var latencyBands = []float64{25, 50, 100, 200, 500, 1e3, 2e3, 5e3, 10e3, 20e3, 50e3, 100e3, 200e3, 500e3, 1e6, 2e6, 5e6}

// bandShares is the share of h's values in each band: below the first
// bound, between bounds, at or above the last. A bucket counts in the band
// its top falls in, the value percentiles report for it (buckets are at
// most 1.6% wide).
func bandShares(h *histogram) []float64 {
	out := make([]float64, len(latencyBands)+1)
	if h.total == 0 {
		return out
	}
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		_, hi := histBounds(i)
		band, onBound := slices.BinarySearch(latencyBands, nsToUs(hi-1))
		if onBound {
			band++
		}
		out[band] += float64(c) / float64(h.total)
	}
	return out
}

func bandName(i int) string {
	switch {
	case i == 0:
		return "< " + fmtDurUs(latencyBands[0])
	case i == len(latencyBands):
		return "≥ " + fmtDurUs(latencyBands[i-1])
	}
	return fmtDurUs(latencyBands[i-1]) + " – " + fmtDurUs(latencyBands[i])
}

// shareCell is a share as a percentage with a bar of up to ten blocks.
func shareCell(p float64) string {
	if p == 0 {
		return ""
	}
	bar := strings.Repeat("█", int(p*10+0.5))
	if bar == "" {
		bar = "▏"
	}
	if p < 0.0005 {
		return "< 0.1% " + bar
	}
	return fmt.Sprintf("%.1f%% %s", 100*p, bar)
}

// writeOpenLoop is the section on latency at a fixed offered rate: ours
// beside the relay, percentiles per rate, then the histograms as text.
func writeOpenLoop(b *strings.Builder, rs resultSet, ours string) {
	var sets []*openLoopRuns
	for _, l := range []string{ours, "relay"} {
		if o := openLoopOf(rs, l); o != nil {
			sets = append(sets, o)
		}
	}
	if len(sets) == 0 {
		return
	}
	first := sets[0].runs[0]
	b.WriteString("### Latency at a fixed offered rate\n\n")
	fmt.Fprintf(b, "%d sessions are opened first; then messages of %d bytes go out at a fixed total rate, spread evenly over the sessions, "+
		"each echoed back by the target (`loadtest openloop`). Sends follow a schedule fixed from the start time, whatever the echoes do, "+
		"and a message's latency is its echo's arrival minus the time it was due, not the time it went out: a proxy that stalls delays every "+
		"message due meanwhile, which a closed loop (the round trips above, where a session waits for its answer) would hide. "+
		"Each rate runs %g s after %g s of warm-up that is not recorded, on the same sessions, the rates one after the other; ours and the relay "+
		"take turns, run by run. Percentiles are of every message of every run (the runs' histograms merged), to within 1.6%%; "+
		"\"p99 by run\" is each run's own p99. \"From the write\" times the same echoes from when the client actually wrote them; "+
		"\"send lag\" is how late those writes were against the schedule (the client's timers wake up to about a millisecond late, "+
		"for both proxies alike).\n\n",
		first.ConnsOpen, first.MsgBytes, first.OpenLoop[0].Seconds, first.OpenLoop[0].WarmupSeconds)
	b.WriteString("| offered | proxy | runs | sent/s | p50 | p90 | p99 | p99.9 | max | p99 by run | from the write p50 / p99 | send lag p99 | lost | proxy CPU % | p99 vs relay | commit |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var rates []float64
	for _, o := range sets {
		for _, r := range o.rates {
			if !slices.Contains(rates, r) {
				rates = append(rates, r)
			}
		}
	}
	slices.Sort(rates)
	var relay *openLoopRuns
	for _, o := range sets {
		if o.label == "relay" {
			relay = o
		}
	}
	for _, rate := range rates {
		for _, o := range sets {
			a := o.steps[rate]
			if a == nil {
				continue
			}
			vs := "-"
			if relay != nil && relay != o && relay.steps[rate] != nil && relay.steps[rate].lat.total > 0 {
				vs = fmt.Sprintf("%.2fx", histUs(&a.lat, 0.99)/histUs(&relay.steps[rate].lat, 0.99))
			}
			p99s := make([]string, len(a.p99s))
			for i, p := range a.p99s {
				p99s[i] = fmtDurUs(p)
			}
			cpu := "-"
			if s := newSpread(a.cpu); s != nil {
				cpu = s.format(fmtFloat(0))
			}
			fmt.Fprintf(b, "| %s/s | %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s / %s | %s | %d | %s | %s | %s |\n",
				fmtCount(int(rate)), o.label, a.rounds, float64(a.sent)/a.seconds,
				fmtDurUs(histUs(&a.lat, 0.5)), fmtDurUs(histUs(&a.lat, 0.9)), fmtDurUs(histUs(&a.lat, 0.99)),
				fmtDurUs(histUs(&a.lat, 0.999)), fmtDurUs(nsToUs(a.lat.max)), strings.Join(p99s, ", "),
				fmtDurUs(histUs(&a.fromSend, 0.5)), fmtDurUs(histUs(&a.fromSend, 0.99)), fmtDurUs(histUs(&a.lag, 0.99)),
				a.lost, cpu, vs, commitsOf(o.runs...))
		}
	}
	b.WriteString("\n")

	// The histograms as text: one column per rate and proxy, one row per
	// latency band, the rows cut to the bands something fell in.
	type column struct {
		name   string
		shares []float64
	}
	var cols []column
	lowest, highest := len(latencyBands), 0
	for _, rate := range rates {
		for _, o := range sets {
			if a := o.steps[rate]; a != nil && a.lat.total > 0 {
				sh := bandShares(&a.lat)
				for i, p := range sh {
					if p > 0 {
						lowest, highest = min(lowest, i), max(highest, i)
					}
				}
				cols = append(cols, column{fmt.Sprintf("%s/s %s", fmtCount(int(rate)), o.label), sh})
			}
		}
	}
	if len(cols) == 0 {
		return
	}
	b.WriteString("Share of messages by latency (from the schedule), every run merged:\n\n| latency |")
	for _, c := range cols {
		b.WriteString(" " + c.name + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(cols)) + "\n")
	for i := lowest; i <= highest; i++ {
		b.WriteString("| " + bandName(i) + " |")
		for _, c := range cols {
			b.WriteString(" " + shareCell(c.shares[i]) + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}
