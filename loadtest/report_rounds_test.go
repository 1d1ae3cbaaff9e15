package main

import (
	"strings"
	"testing"
)

// Ours and the relay in five rounds: the tables pool every run, "vs relay"
// is the per-round ratios' median [worst–best], and a target whose median
// round meets it is still missed when its worst round does not.
func TestReportMainRounds(t *testing.T) {
	const machine = "Test CPU, 2 cores (nproc), Linux 9.9"
	run := func(label, mode, dir string, round int, v float64) *Result {
		r := roundRun(label, mode, dir, round, v)
		r.Commit, r.Machine = "c1-dirty", machine
		r.Pinned, r.Affinity = true, "proxy on CPUs 0, client on 1, target on 1"
		return r
	}
	var all []*Result
	// down: ours 0.9 × the relay in every round; up: 0.9 × but 0.7 × in
	// round 3; setup: 0.85 × everywhere.
	for n := 1; n <= 5; n++ {
		up := 900.0
		if n == 3 {
			up = 700
		}
		all = append(all,
			run("ours", "throughput", "down", n, 900), run("relay", "throughput", "down", n, 1000),
			run("relay", "throughput", "up", n, 1000), run("ours", "throughput", "up", n, up),
			run("ours", "setup", "", n, 850), run("relay", "setup", "", n, 1000))
	}
	var b strings.Builder
	writeReport(&b, all, &reportFlags{order: "ours,python,node,relay", ours: "ours", goVersion: "go1.x"})
	got := b.String()
	for _, want := range []string{
		"Machine: " + machine + ". Pinned (BENCH_PIN=1): proxy on CPUs 0, client on 1, target on 1.",
		"| throughput down, one connection ≥ 0.9 × relay, worst round | worst 0.90 × relay, median 0.90 over 5 rounds (every round: 0.90, 0.90, 0.90, 0.90, 0.90) | met | `c1-dirty` |",
		"| throughput up, one connection ≥ 0.9 × relay, worst round | worst 0.70 × relay, median 0.90 over 5 rounds (every round: 0.90, 0.90, 0.70, 0.90, 0.90) | **missed** |",
		"| sessions set up per second ≥ 0.9 × relay, worst round | worst 0.85 × relay, median 0.85 over 5 rounds",
		"| ours | 900 [900–900] | 0.90 [0.90–0.90] over 5 rounds | 900 [700–900] | 0.90 [0.70–0.90] over 5 rounds | 1.00 GiB | 5 / 5 | 90 [90–90] / 90 [90–90] | 40 [40–40] / 30 [30–30] |",
		"| ours | 850 [850–850] | 0.85 [0.85–0.85] over 5 rounds |",
		"ours: 5 windows over 5 rounds",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	// The round runs are not counted twice, nor shown as rows of their own.
	if strings.Count(got, "| relay | 1000") != 2 {
		t.Errorf("want one relay row per table:\n%s", got)
	}
}

// The machine line comes from the results, never from the machine that
// renders the report.
func TestReportMachineFromResults(t *testing.T) {
	var b strings.Builder
	writeMachineLine(&b, []*Result{{Machine: "A"}, {Machine: "B"}, {}})
	if got := b.String(); got != "Machines (the results come from more than one): A; B. (No machine recorded in 1 run.) Not pinned: the proxy, the client and the target share every core." {
		t.Errorf("got %q", got)
	}
	b.Reset()
	writeMachineLine(&b, []*Result{{}})
	if got := b.String(); !strings.HasPrefix(got, "Machine: not recorded in the results.") {
		t.Errorf("got %q", got)
	}
}

func TestCPUPerSetup(t *testing.T) {
	// 50% of a core at 2,500 sessions/s is 200 µs a session; 90% at 3,000 is 300.
	r := &Result{
		SessionsPerSec: newSpread([]float64{2500, 3000}),
		ProxyCPU:       newSpread([]float64{50, 90}),
		ClientCPU:      newSpread([]float64{25, 30}),
		TargetCPU:      newSpread([]float64{10, 15}),
	}
	if got, want := cpuPerSetupCell(r), "250 [200–300] / 100 [100–100] / 45 [40–50] / 395 [340–450]"; got != want {
		t.Errorf("cpuPerSetupCell = %q, want %q", got, want)
	}
	r.ClientCPU = newSpread([]float64{25}) // windows that do not pair up
	if got := cpuPerSetupCell(r); got != "250 [200–300] / - / 45 [40–50] / -" {
		t.Errorf("unpaired windows: %q", got)
	}
	if cpuPerSetup(nil, r.SessionsPerSec) != nil {
		t.Error("no CPU reading gave a figure")
	}
}

// The pinned rounds get a section of their own, beside the shared ones,
// and never rows in the main tables.
func TestReportPinnedRounds(t *testing.T) {
	run := func(label, mode, dir string, round int, v float64) *Result {
		r := roundRun(label, mode, dir, round, v)
		r.Commit = "c2"
		if strings.HasSuffix(label, pinnedSuffix) {
			r.Pinned, r.Affinity = true, "proxy on CPUs 0, client on 1, target on 1"
		}
		return r
	}
	var all []*Result
	for n := 1; n <= 3; n++ {
		all = append(all,
			run("ours", "setup", "", n, 700), run("relay", "setup", "", n, 1000),
			run("ours-pinned", "setup", "", n, 800+float64(n)*10), run("relay-pinned", "setup", "", n, 1000))
	}
	var b strings.Builder
	writeReport(&b, all, &reportFlags{order: "ours,python,node,relay", ours: "ours", goVersion: "go1.x"})
	got := b.String()
	for _, want := range []string{
		"### Pinned apart",
		"proxy on CPUs 0, client on 1, target on 1",
		"| sessions set up per second | 0.70 [0.70–0.70] over 3 rounds | 0.82 [0.81–0.83] over 3 rounds | 820 [810–830] sessions/s | 1000 [1000–1000] sessions/s | 90 [90–90] / 90 [90–90] | 40 [40–40] / 30 [30–30] | 40 [40–40] / 30 [30–30] | `c2` |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "| ours-pinned |") || strings.Contains(got, "| relay-pinned |") {
		t.Errorf("pinned runs shown as rows of the main tables:\n%s", got)
	}
	// Without pinned rounds there is no such section.
	b.Reset()
	writeReport(&b, all[:2], &reportFlags{order: "ours,python,node,relay", ours: "ours", goVersion: "go1.x"})
	if strings.Contains(b.String(), "### Pinned apart") {
		t.Error("a pinned section without pinned rounds")
	}
}

// roundRun is a result of one round of the main comparison: v is its
// sessions/s (setup) or MB/s (throughput, one connection).
func roundRun(label, mode, dir string, round int, v float64) *Result {
	r := &Result{Mode: mode, Label: label, Dir: dir, Round: round, Time: "2026-12-01T10:00:00Z",
		ProxyCPU: newSpread([]float64{90}), ClientCPU: newSpread([]float64{40}), TargetCPU: newSpread([]float64{30})}
	if mode == "setup" {
		r.Concurrency, r.WindowSeconds = 50, 5
		r.SessionsPerSec = newSpread([]float64{v})
	} else {
		r.ConnsWanted, r.Bytes = 1, 1<<30
		r.MBps = newSpread([]float64{v})
	}
	return r
}
