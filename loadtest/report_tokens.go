package main

import (
	"fmt"
	"slices"
	"strings"
)

// The report's section on session set-up with token plugins: our proxy
// with a fixed target, with a TokenFile and with TokenRedis, measured in
// interleaved rounds (bench/run.sh passes -round), each plugin's rate
// compared with the fixed-target rate of the same round.

// targetTokenRatio is the least set-up rate with a token plugin, over the
// fixed-target rate of the same run.
const targetTokenRatio = 0.9

// tokenVariant is one way our proxy runs in the token rounds.
type tokenVariant struct {
	suffix string // of the label: ours + suffix
	what   string // for the section and the Targets table
}

// The fixed-target variant first: it is the reference of the others.
var tokenVariants = []tokenVariant{
	{"-fixed", "fixed target"},
	{"-tokenfile", "TokenFile"},
	{"-tokenredis", "TokenRedis"},
}

// isRoundRun says whether a result belongs to a series of interleaved
// rounds, which has its own section instead of a row in the mode's table.
func isRoundRun(r *Result) bool { return r.Round > 0 }

// tokenRounds is one variant's setup runs by round (the latest run of each
// round), with the rounds in order.
type tokenRounds struct {
	label  string
	what   string
	byRnd  map[int]*Result
	rounds []int
}

func collectTokenRounds(rs resultSet, ours string) []*tokenRounds {
	var out []*tokenRounds
	for _, v := range tokenVariants {
		t := &tokenRounds{label: ours + v.suffix, what: v.what, byRnd: map[int]*Result{}}
		for _, r := range rs {
			if r.Mode == "setup" && r.Label == t.label && isRoundRun(r) {
				if _, seen := t.byRnd[r.Round]; !seen {
					t.rounds = append(t.rounds, r.Round)
				}
				t.byRnd[r.Round] = r
			}
		}
		slices.Sort(t.rounds)
		out = append(out, t)
	}
	return out
}

// runs is the variant's results in round order.
func (t *tokenRounds) runs() []*Result {
	var out []*Result
	for _, n := range t.rounds {
		out = append(out, t.byRnd[n])
	}
	return out
}

// ratios is, for every round both t and fixed measured a rate in, t's
// median over fixed's median.
func (t *tokenRounds) ratios(fixed *tokenRounds) []float64 {
	var qs []float64
	for _, n := range t.rounds {
		a, f := t.byRnd[n], fixed.byRnd[n]
		if a == nil || f == nil || a.SessionsPerSec == nil || f.SessionsPerSec == nil || f.SessionsPerSec.Median == 0 {
			continue
		}
		qs = append(qs, a.SessionsPerSec.Median/f.SessionsPerSec.Median)
	}
	return qs
}

// pooled gathers a quantity's samples over every window of every round.
func pooled(runs []*Result, get func(*Result) *Spread) *Spread {
	var all []float64
	for _, r := range runs {
		all = append(all, samplesOf(get(r))...)
	}
	return newSpread(all)
}

// cpuPerSession is the CPU time of the proxy and of its token backend (when
// its CPU was read) per session set up, in µs, for every window where the
// CPU and the rate were read: less sensitive to other load on the machine
// than the rate is.
func cpuPerSession(runs []*Result) *Spread {
	var us []float64
	for _, r := range runs {
		if r.ProxyCPU == nil || r.SessionsPerSec == nil || len(r.ProxyCPU.Samples) != len(r.SessionsPerSec.Samples) {
			continue
		}
		backend := samplesOf(r.BackendCPU)
		if len(backend) != len(r.ProxyCPU.Samples) {
			backend = nil
		}
		for i, pct := range r.ProxyCPU.Samples {
			if backend != nil {
				pct += backend[i]
			}
			if rate := r.SessionsPerSec.Samples[i]; rate > 0 {
				us = append(us, pct/100/rate*1e6)
			}
		}
	}
	return newSpread(us)
}

// distinct lists the different non-empty values of f over runs.
func distinct(runs []*Result, f func(*Result) string) []string {
	var out []string
	for _, r := range runs {
		if v := f(r); v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func fmtRatios(qs []float64) string {
	parts := make([]string, len(qs))
	for i, q := range qs {
		parts[i] = fmt.Sprintf("%.2f", q)
	}
	return strings.Join(parts, ", ")
}

func writeTokenSetup(b *strings.Builder, rs resultSet, ours string) {
	vs := collectTokenRounds(rs, ours)
	fixed := vs[0]
	var all []*Result
	for _, t := range vs {
		all = append(all, t.runs()...)
	}
	b.WriteString("### Set-up with token plugins\n\n")
	if len(all) == 0 {
		b.WriteString("Not measured yet.\n\n")
		return
	}
	first := all[0]
	fmt.Fprintf(b, "Session set-up as in \"Session set-up rate\" (%d clients at once, each looping over connect, handshake, one byte echoed, close), "+
		"our proxy three ways: with a fixed target (label %s), and with the target looked up for every session from the token in the request's query, "+
		"in a TokenFile (%s) and in TokenRedis (%s, a redis-server on 127.0.0.1 holding the same tokens). "+
		"They run in interleaved rounds, the order turning each round, so that drift in the machine's load falls on all alike; "+
		"each round is one run per proxy of %s of %g s. "+
		"**/ fixed** is a round's median over the fixed-target median of the same round: the median over the rounds, and the worst round. "+
		"sessions/s, latencies and CPU are the median [min–max] over every window of every round; "+
		"Backend CPU is the redis-server's, beside the proxy's; CPU per session is the CPU time of the proxy and its backend over the sessions set up, window by window.\n\n",
		first.Concurrency, fixed.label, vs[1].label, vs[2].label, plural(windowsOf(first.SessionsPerSec), "window"), first.WindowSeconds)
	writeMeasuredOn(b, all)
	b.WriteString("| proxy | started as | client asks for | rounds | sessions/s | / fixed, median of rounds | worst round | every round | p50 | p99 | proxy CPU % | backend CPU % | CPU per session, proxy + backend | errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i, t := range vs {
		runs := t.runs()
		if len(runs) == 0 {
			fmt.Fprintf(b, "| %s | not measured yet | | | | | | | | | | | | |\n", t.label)
			continue
		}
		rate := pooled(runs, func(r *Result) *Spread { return r.SessionsPerSec })
		if rate == nil {
			fmt.Fprintf(b, "| %s | failed: %s | | | | | | | | | | | | |\n", t.label, oneLine(runs[len(runs)-1].Error))
			continue
		}
		med, worst, every := "1", "1", "-"
		if i > 0 {
			med, worst = "-", "-"
			if q := newSpread(t.ratios(fixed)); q != nil {
				med, worst, every = fmt.Sprintf("%.2f", q.Median), fmt.Sprintf("%.2f", q.Min), fmtRatios(q.Samples)
			}
		}
		var errs errorTally
		for _, r := range runs {
			errs.merge(r.Errors)
		}
		fmt.Fprintf(b, "| %s | `%s` | `%s` | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t.label,
			strings.Join(distinct(runs, func(r *Result) string { return r.Proxy }), "`, `"),
			orDash(strings.Join(distinct(runs, func(r *Result) string { return r.Path }), "`, `")),
			len(runs), rate.format(fmtFloat(0)), med, worst, every,
			pooled(runs, func(r *Result) *Spread { return r.SetupP50us }).format(fmtDurUs),
			pooled(runs, func(r *Result) *Spread { return r.SetupP99us }).format(fmtDurUs),
			pooled(runs, func(r *Result) *Spread { return r.ProxyCPU }).format(fmtFloat(0)),
			pooled(runs, func(r *Result) *Spread { return r.BackendCPU }).format(fmtFloat(0)),
			cpuPerSession(runs).format(fmtDurUs), errorsCell(&Result{Errors: errs}))
	}
	b.WriteString("\n")
}

// tokenVerdicts adds a Targets row per token plugin: its set-up rate over
// the fixed-target rate of the same rounds, judged by the median round.
func tokenVerdicts(v verdicts, rs resultSet, ours string) {
	vs := collectTokenRounds(rs, ours)
	fixed := vs[0]
	for _, t := range vs[1:] {
		name := fmt.Sprintf("sessions set up per second with %s ≥ %.1f × fixed target, same run", t.what, targetTokenRatio)
		q := newSpread(t.ratios(fixed))
		if q == nil {
			v.row(name, "", false, false)
			continue
		}
		value := fmt.Sprintf("%.2f × fixed (median of %s; worst %.2f)", q.Median, plural(len(q.Samples), "round"), q.Min)
		v.row(name, value, q.Median >= targetTokenRatio, true, append(t.runs(), fixed.runs()...)...)
	}
}

// writeMeasuredOn says which machines, builds and times a section's runs
// come from, as the results record them.
func writeMeasuredOn(b *strings.Builder, all []*Result) {
	machines := distinct(all, func(r *Result) string { return r.Machine })
	if len(machines) == 0 {
		machines = []string{"not recorded"}
	}
	fmt.Fprintf(b, "Measured on: %s. Commit: %s. Runs from %s to %s.\n\n", strings.Join(machines, "; "), commitsOf(all...),
		slices.MinFunc(all, func(a, b *Result) int { return strings.Compare(a.Time, b.Time) }).Time,
		slices.MaxFunc(all, func(a, b *Result) int { return strings.Compare(a.Time, b.Time) }).Time)
}
