package main

import (
	"fmt"
	"slices"
	"strings"
)

// The main comparison in the report, ours against the relay, measured in
// interleaved rounds (bench/run.sh passes -round to both proxies' one-
// connection throughput and set-up runs, the order turning each round):
// each round's ratio is ours over the relay in that round, and a target is
// met only when its worst round meets it, so that a verdict does not rest
// on one lucky pass inside the run-to-run noise.

// mainMeasure is one figure of the main comparison.
type mainMeasure struct {
	what, mode, dir string
	get             func(*Result) *Spread
	target          float64
}

var mainMeasures = []mainMeasure{
	{"throughput down, one connection", "throughput", "down", func(r *Result) *Spread { return r.MBps }, targetThroughputRatio},
	{"throughput up, one connection", "throughput", "up", func(r *Result) *Spread { return r.MBps }, targetThroughputRatio},
	{"sessions set up per second", "setup", "", func(r *Result) *Spread { return r.SessionsPerSec }, targetSetupRatio},
}

// isMainRound says whether r is a round of the main comparison for one of
// labels (the table's proxies; the token and metrics rounds run under
// labels of their own).
func isMainRound(r *Result, labels []string) bool {
	if !isRoundRun(r) || r.TLS || r.Background > 0 || !slices.Contains(labels, r.Label) {
		return false
	}
	return r.Mode == "setup" || (r.Mode == "throughput" && tputConns(r) == 1)
}

// mainRounds is label's runs of m by round (the latest run of each round).
func mainRounds(rs resultSet, label string, m mainMeasure) map[int]*Result {
	out := map[int]*Result{}
	for _, r := range rs {
		if r.Label == label && r.Mode == m.mode && r.Dir == m.dir && isRoundRun(r) && !r.TLS && r.Background == 0 &&
			(r.Mode != "throughput" || tputConns(r) == 1) {
			out[r.Round] = r
		}
	}
	return out
}

// mainRatios is, for every round label and the relay both measured m in,
// label's median over the relay's; and the runs it used.
func mainRatios(rs resultSet, label string, m mainMeasure) (ratios []float64, runs []*Result) {
	return pairRatios(rs, label, "relay", m)
}

// pairRatios is mainRatios against the reference label ref.
func pairRatios(rs resultSet, label, ref string, m mainMeasure) (ratios []float64, runs []*Result) {
	a, rel := mainRounds(rs, label, m), mainRounds(rs, ref, m)
	var rounds []int
	for n := range a {
		rounds = append(rounds, n)
	}
	slices.Sort(rounds)
	for _, n := range rounds {
		x, y := a[n], rel[n]
		if y == nil || m.get(x) == nil || m.get(y) == nil || m.get(y).Median == 0 {
			continue
		}
		ratios = append(ratios, m.get(x).Median/m.get(y).Median)
		runs = append(runs, x, y)
	}
	return ratios, runs
}

// withPooledRounds adds, for every proxy of labels measured in main rounds,
// one result per mode and direction pooling every window or run of every
// round, for the tables (which find results outside rounds only). The
// round runs stay in the set, for the ratios.
func withPooledRounds(all []*Result, labels []string) resultSet {
	type key struct{ label, mode, dir string }
	groups := map[key][]*Result{}
	var order []key
	for _, r := range all {
		if !isMainRound(r, labels) {
			continue
		}
		k := key{r.Label, r.Mode, r.Dir}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	rs := slices.Clone(resultSet(all))
	for _, k := range order {
		rs = append(rs, poolRuns(groups[k]))
	}
	return rs
}

// poolRuns is one result standing for runs of one proxy, mode and
// direction: every sample of every run, the last run's settings.
func poolRuns(runs []*Result) *Result {
	last := runs[len(runs)-1]
	p := *last
	p.Round = 0
	p.RoundsPooled = len(runs)
	p.Errors = errorTally{}
	p.Error = ""
	sp := func(get func(*Result) *Spread) *Spread { return pooled(runs, get) }
	p.MBps = sp(func(r *Result) *Spread { return r.MBps })
	p.SessionsPerSec = sp(func(r *Result) *Spread { return r.SessionsPerSec })
	p.SetupP50us = sp(func(r *Result) *Spread { return r.SetupP50us })
	p.SetupP99us = sp(func(r *Result) *Spread { return r.SetupP99us })
	p.ProxyCPU = sp(func(r *Result) *Spread { return r.ProxyCPU })
	p.ClientCPU = sp(func(r *Result) *Spread { return r.ClientCPU })
	p.TargetCPU = sp(func(r *Result) *Spread { return r.TargetCPU })
	p.Sessions = 0
	var failed []string
	for _, r := range runs {
		p.Errors.merge(r.Errors)
		p.Sessions += r.Sessions
		if r.Error != "" {
			failed = append(failed, fmt.Sprintf("round %d: %s", r.Round, oneLine(r.Error)))
		}
	}
	p.Error = strings.Join(failed, "; ")
	return &p
}

// vsRelayCell is the "vs relay" cell of label's m: the per-round ratios'
// median [worst–best] over the rounds when both ran in rounds, else the
// median over the relay's median (one pass each).
func vsRelayCell(rs resultSet, label string, m mainMeasure, a, relay *Spread) string {
	if label != "relay" {
		if ratios, _ := mainRatios(rs, label, m); len(ratios) > 0 {
			q := newSpread(ratios)
			return fmt.Sprintf("%.2f [%.2f–%.2f] over %s", q.Median, q.Min, q.Max, plural(len(ratios), "round"))
		}
	}
	return ratio(a, relay)
}

// mainVerdict adds the Targets row of m: judged on the worst round when
// ours and the relay ran in rounds, else on the one pass each (older
// results), which the value says.
func mainVerdict(v verdicts, rs resultSet, ours string, m mainMeasure) {
	name := fmt.Sprintf("%s ≥ %.1f × relay, worst round", m.what, m.target)
	if ratios, runs := mainRatios(rs, ours, m); len(ratios) > 0 {
		q := newSpread(ratios)
		value := fmt.Sprintf("worst %.2f × relay, median %.2f over %s (every round: %s)",
			q.Min, q.Median, plural(len(ratios), "round"), fmtRatios(ratios))
		v.row(name, value, q.Min >= m.target, true, runs...)
		return
	}
	var r, relay *Result
	if m.mode == "throughput" {
		r, relay = rs.findTput(ours, m.dir, 1), rs.findTput("relay", m.dir, 1)
	} else {
		r, relay = rs.find(m.mode, ours, m.dir), rs.find(m.mode, "relay", m.dir)
	}
	if r == nil || relay == nil || m.get(r) == nil || m.get(relay) == nil || m.get(relay).Median == 0 {
		v.row(name, "", false, false)
		return
	}
	q := m.get(r).Median / m.get(relay).Median
	v.row(name, fmt.Sprintf("%.2f × relay (one pass each, not in rounds)", q), q >= m.target, true, r, relay)
}

// sideCPUCell is a result's client and target CPU, "client / target".
func sideCPUCell(r *Result) string {
	if r == nil || (r.ClientCPU == nil && r.TargetCPU == nil) {
		return "-"
	}
	return r.ClientCPU.format(fmtFloat(0)) + " / " + r.TargetCPU.format(fmtFloat(0))
}

// writeMachineLine names the machines the results were measured on, from
// the results themselves (never the machine rendering the report), and
// where the proxy, the client and the target could run.
func writeMachineLine(b *strings.Builder, all []*Result) {
	machines := distinct(all, func(r *Result) string { return r.Machine })
	unrecorded := 0
	for _, r := range all {
		if r.Machine == "" {
			unrecorded++
		}
	}
	switch {
	case len(machines) == 0:
		b.WriteString("Machine: not recorded in the results.")
	case len(machines) == 1:
		fmt.Fprintf(b, "Machine: %s.", machines[0])
	default:
		fmt.Fprintf(b, "Machines (the results come from more than one): %s.", strings.Join(machines, "; "))
	}
	if unrecorded > 0 && len(machines) > 0 {
		fmt.Fprintf(b, " (No machine recorded in %s.)", plural(unrecorded, "run"))
	}
	var pinnedRuns []*Result
	for _, r := range all {
		if r.Pinned {
			pinnedRuns = append(pinnedRuns, r)
		}
	}
	switch {
	case len(pinnedRuns) == 0:
		b.WriteString(" Not pinned: the proxy, the client and the target share every core.")
	case len(pinnedRuns) == len(all):
		fmt.Fprintf(b, " Pinned (BENCH_PIN=1): %s.", strings.Join(distinct(pinnedRuns, func(r *Result) string { return r.Affinity }), "; "))
	default:
		fmt.Fprintf(b, " Pinned (the pinned rounds, or BENCH_PIN=1) in %d of %d runs: %s; the others share every core.", len(pinnedRuns), len(all),
			strings.Join(distinct(pinnedRuns, func(r *Result) string { return r.Affinity }), "; "))
	}
}

// cpuPerSetup is, window by window, the µs of CPU a process spent per
// session set up: its CPU % of one core over the window's sessions/s. nil
// when the windows of the two do not pair up.
func cpuPerSetup(cpu, rate *Spread) *Spread {
	if cpu == nil || rate == nil || len(cpu.Samples) != len(rate.Samples) {
		return nil
	}
	us := make([]float64, 0, len(cpu.Samples))
	for i, pct := range cpu.Samples {
		if rate.Samples[i] <= 0 {
			return nil
		}
		us = append(us, pct/100*1e6/rate.Samples[i])
	}
	return newSpread(us)
}

// cpuPerSetupCell is the set-up table's "CPU µs per set-up" cell: proxy,
// client and target, and the three together (window by window).
func cpuPerSetupCell(r *Result) string {
	proxy := cpuPerSetup(r.ProxyCPU, r.SessionsPerSec)
	client := cpuPerSetup(r.ClientCPU, r.SessionsPerSec)
	target := cpuPerSetup(r.TargetCPU, r.SessionsPerSec)
	if proxy == nil {
		return "-"
	}
	total := "-"
	if client != nil && target != nil {
		sum := make([]float64, len(proxy.Samples))
		for i := range sum {
			sum[i] = proxy.Samples[i] + client.Samples[i] + target.Samples[i]
		}
		total = newSpread(sum).format(fmtFloat(0))
	}
	return fmt.Sprintf("%s / %s / %s / %s", proxy.format(fmtFloat(0)), client.format(fmtFloat(0)), target.format(fmtFloat(0)), total)
}
