package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// One-connection and many-connection throughput land in separate tables,
// each compared with the relay's run over the same number of connections;
// results written before -conns existed count as one connection.
func TestReportThroughputTables(t *testing.T) {
	tput := func(label, dir string, conns int, samples ...float64) *Result {
		return &Result{Mode: "throughput", Label: label, Dir: dir, ConnsWanted: conns, Bytes: 1 << 20,
			MBps: newSpread(samples), ProxyCPU: newSpread([]float64{50, 60}), Time: "2026-11-27T15:00:00Z"}
	}
	failed := tput("node", "up", 100, 30)
	failed.Error = "run 2: proxy died"
	all := []*Result{
		tput("relay", "down", 0, 1000, 900, 1100), tput("relay", "up", 0, 800),
		tput("ours", "down", 1, 800, 700, 900), tput("ours", "up", 1, 400),
		tput("relay", "down", 100, 2000), tput("relay", "up", 100, 1000),
		tput("ours", "down", 100, 1000), failed,
	}
	var b strings.Builder
	writeReport(&b, all, &reportFlags{order: "ours,python,node,relay", ours: "ours", goVersion: "go1.x", nodeVersion: "0.7.1"})
	got := b.String()
	one, many, ok := strings.Cut(got, "### Throughput, 100 connections at once")
	if !ok || !strings.Contains(one, "### Throughput, one connection") {
		t.Fatalf("missing a throughput table:\n%s", got)
	}
	for _, want := range []string{
		"| ours | 800 [700–900] | 0.80 | 400 | 0.50 | 1.0 MiB | 3 / 1 | 55 [50–60] / 55 [50–60] |",
		"| python | not measured yet |",
		"| throughput down, one connection ≥ 0.9 × relay, worst round | 0.80 × relay (one pass each, not in rounds) | **missed** |",
		"Node websockify 0.7.1",
	} {
		if !strings.Contains(one, want) {
			t.Errorf("one-connection part lacks %q:\n%s", want, one)
		}
	}
	for _, want := range []string{
		"| ours | 1000 | 0.50 | not measured yet | - |",
		"| node | not measured yet | - | 30 (then failed, see below) | 0.030 |",
		"- node, throughput up, 100 connections failed: run 2: proxy died",
	} {
		if !strings.Contains(many, want) {
			t.Errorf("100-connection part lacks %q:\n%s", want, many)
		}
	}
}

// -conns through the relay: every connection's share arrives, and the rate
// is over all of them.
func TestThroughputManyConnsThroughRelay(t *testing.T) {
	for _, dir := range []string{"down", "up"} {
		cfg := &settings{mode: "throughput", relay: true, target: "127.0.0.1:0", opTimeout: 20 * time.Second,
			repeat: 2, dir: dir, nbytes: 4<<20 + 3, frameSize: 64 << 10, conns: 10}
		r := runMode(t, cfg)
		if r.MBps == nil || len(r.MBps.Samples) != 2 || r.ConnsOpen != 10 || r.Bytes != (4<<20+3)/10*10 {
			t.Fatalf("throughput %s over 10: %s", dir, summarize(r))
		}
	}
}

// reportOf renders the generated section for results.
func reportOf(all []*Result) string {
	var b strings.Builder
	writeReport(&b, all, &reportFlags{order: "ours,python,node,relay", ours: "ours", goVersion: "go1.x"})
	return b.String()
}

// targetRow is the Targets table's row that starts with name, or "".
func targetRow(report, name string) string {
	for _, line := range strings.Split(report, "\n") {
		if strings.HasPrefix(line, "| "+name) {
			return line
		}
	}
	return ""
}

// sessionEngineResults are runs of the wss, stall and beside-bulk modes:
// adjust them, then render.
func sessionEngineResults() (all []*Result, oursStall, relayStall *Result, oursBeside []*Result) {
	tput := func(label, dir string, tls bool, mbps float64) *Result {
		return &Result{Mode: "throughput", Label: label, Dir: dir, TLS: tls, Bytes: 1 << 30, Commit: "c1",
			MBps: newSpread([]float64{mbps}), ProxyCPU: newSpread([]float64{60})}
	}
	hold := func(label string, tls bool, per float64, n int) *Result {
		return &Result{Mode: "hold", Label: label, TLS: tls, Commit: "c1", ConnsWanted: n, ConnsOpen: n, AliveChecked: 100, AliveOK: 100,
			PerSession: &perSession{PrivateDirty: per}, MemAfter: &memSnapshot{Procs: 1}}
	}
	stall := func(label string, per, cpu float64, n int) *Result {
		return &Result{Mode: "stall", Label: label, Commit: "c1", ConnsWanted: n, ConnsOpen: n, AliveChecked: n, AliveOK: n,
			PerSession: &perSession{PrivateDirty: per}, ProxyCPU: newSpread([]float64{cpu}),
			Stall: &stallInfo{Plateau: true, PlateauSeconds: 4, PlateauWindowS: 3, PlateauTimeoutS: 60, CPUWindowS: 10,
				ProveBytes: 64 << 10, ResumeBytes: 256 << 10, DeepSessions: 4, DeepOK: 4, DeepBytes: 64 << 20}}
	}
	beside := func(label string, p50, p99 []float64) *Result {
		return &Result{Mode: "echo", Label: label, Commit: "c1", Background: 4, ConnsWanted: 200, ConnsOpen: 200, WindowSeconds: 5,
			MsgBytes: 64, ThinkMs: 100, RTTP50us: newSpread(p50), RTTP99us: newSpread(p99), RTPerSec: newSpread([]float64{1900}),
			BackgroundMBps: newSpread([]float64{300}), RoundTrips: 9000}
	}
	oursStall, relayStall = stall("ours", 200<<10, 1.0, 200), stall("relay", 20<<10, 0, 200)
	plainEcho := &Result{Mode: "echo", Label: "ours", Commit: "c1", ConnsWanted: 1000, ConnsOpen: 1000,
		RTTP50us: newSpread([]float64{875}), RTTP99us: newSpread([]float64{6680}), RTPerSec: newSpread([]float64{9837})}
	all = []*Result{
		tput("ours", "down", false, 800), tput("ours", "up", false, 760),
		tput("ours-wss", "down", true, 420), tput("ours-wss", "up", true, 370),
		hold("ours", false, 1631, 9900), hold("ours-wss", true, 20<<10, 300),
		plainEcho, oursStall, relayStall,
	}
	// Interleaved rounds, ours first; p50 and p99 pool over the rounds.
	oursBeside = []*Result{beside("ours", []float64{10e3}, []float64{40e3}), beside("ours", []float64{11e3}, []float64{44e3}), beside("ours", []float64{12e3}, []float64{48e3})}
	relayBeside := []*Result{beside("relay", []float64{9e3}, []float64{40e3}), beside("relay", []float64{9e3}, []float64{41e3}), beside("relay", []float64{10e3}, []float64{42e3})}
	for i := range oursBeside {
		all = append(all, oursBeside[i], relayBeside[i])
	}
	return all, oursStall, relayStall, oursBeside
}

// The targets of the session engine get their verdicts from the results,
// and the wss and beside-bulk runs stay out of the other tables.
func TestReportSessionEngineTargets(t *testing.T) {
	all, _, relayStall, _ := sessionEngineResults()
	relayStall.Commit = "c2" // the relay's stall run came from another build
	got := reportOf(all)
	for name, want := range map[string]string{
		"wss throughput down":                                         "| 420 MB/s; wss / ws 0.53 (27 Nov 2026: 0.51) | met | `c1` |",
		"wss throughput up":                                           "| 370 MB/s; wss / ws 0.49 (27 Nov 2026: 0.50) | **missed** | `c1` |",
		"≤ 24 KiB proxy memory per held wss session":                  "| 20.0 KiB private dirty, 300 of 300 held (27 Nov 2026: 70.0 KiB) | met | `c1` |",
		"≤ 128 KiB proxy memory per stalled session":                  "| 200.0 KiB private dirty, 200 of 200 stalled, flat after 4.0 s, 200 of 200 read on correctly | **missed** |",
		"1,000 stalled sessions cost ≤ 2% of one core":                "| 1.0% with 200 stalled (5.0% scaled to 1,000) | **missed** |",
		"round trips beside bulk sessions: p50 and p99 ≤ 1.2 × relay": "| p50 1.22 ×, p99 1.07 × relay (11.00 ms / 44.00 ms against 9.00 ms / 41.00 ms) | **missed** | `c1` |",
	} {
		if row := targetRow(got, name); !strings.Contains(row, want) {
			t.Errorf("target %q: row %q lacks %q", name, row, want)
		}
	}
	tables, _, _ := strings.Cut(got, "### wss beside ws")
	if strings.Contains(tables, "| ours-wss |") {
		t.Errorf("the wss runs appear in the plain tables:\n%s", tables)
	}
	if !strings.Contains(got, "| ours | 1000 of 1000 | 9837 | 875 µs | 6.68 ms |") {
		t.Errorf("the plain round-trip row lost to the runs beside bulk:\n%s", got)
	}
	for _, want := range []string{
		"| throughput down, one connection | 800 MB/s | 420 MB/s | 0.53 | 401 MB/s | 0.51 |",
		"| proxy memory per held session, private dirty | 1631 B (9900 held, 100 of 100 echoing) | 20.0 KiB (300 held, 100 of 100 echoing) | 12.6 | 70.0 KiB (2000 held) | 23 |",
		"| ours | 3 × 1 | 200 of 200 | 11.00 ms [10.00 ms–12.00 ms] | 44.00 ms [40.00 ms–48.00 ms] |",
		"| 1.22 / 1.07 | `c1` |",
		"| ours | 200 of 200 | 200.0 KiB |",
		"| relay | 200 of 200 | 20.0 KiB |",
		"**The rows come from different builds**",
		"- `c2`: relay (stall)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

// The same targets met, and the conditions that make a figure within its
// target a miss all the same.
func TestReportSessionEngineVerdicts(t *testing.T) {
	all, oursStall, _, oursBeside := sessionEngineResults()
	oursStall.PerSession.PrivateDirty, oursStall.ProxyCPU = 100<<10, newSpread([]float64{1.5})
	oursStall.ConnsWanted, oursStall.ConnsOpen, oursStall.AliveChecked, oursStall.AliveOK = 1000, 1000, 1000, 1000
	for _, r := range oursBeside {
		r.RTTP50us, r.RTTP99us = newSpread([]float64{10e3}), newSpread([]float64{41e3})
	}
	got := reportOf(all)
	for _, name := range []string{"≤ 128 KiB proxy memory per stalled session", "1,000 stalled sessions cost", "round trips beside bulk sessions"} {
		if row := targetRow(got, name); !strings.Contains(row, "| met |") {
			t.Errorf("target %q not met: %q", name, row)
		}
	}
	if !strings.Contains(got, "Every row measured the build of commit `c1`") {
		t.Errorf("one build, but no line saying so:\n%s", got)
	}

	for what, spoil := range map[string]func(){
		"no plateau":         func() { oursStall.Stall.Plateau = false },
		"a session lost":     func() { oursStall.AliveOK-- },
		"a deep read failed": func() { oursStall.Stall.DeepOK-- },
		"stopped short of N": func() { oursStall.ConnsOpen-- },
		"a corrupted byte":   func() { oursStall.Stall.CorruptedBytes = 1 },
		"grew after the plateau": func() {
			oursStall.Stall.ToleranceBytes, oursStall.Stall.ProxyGrewBytes = 1<<20, 2<<20
		},
		"over 128 KiB": func() { oursStall.PerSession.PrivateDirty = 129 << 10 },
	} {
		all, oursStall, _, _ = sessionEngineResults()
		oursStall.PerSession.PrivateDirty = 100 << 10
		spoil()
		if row := targetRow(reportOf(all), "≤ 128 KiB proxy memory per stalled session"); !strings.Contains(row, "**missed**") {
			t.Errorf("%s: stall memory target not missed: %q", what, row)
		}
	}
	// Stopped short by the kernel TCP memory guard: judged on what stalled.
	all, oursStall, _, _ = sessionEngineResults()
	oursStall.PerSession.PrivateDirty = 100 << 10
	oursStall.ConnsOpen, oursStall.AliveChecked, oursStall.AliveOK = 150, 150, 150
	oursStall.Stall.GuardStopped = true
	if row := targetRow(reportOf(all), "≤ 128 KiB proxy memory per stalled session"); !strings.Contains(row, "150 of 200 stalled (the kernel TCP memory guard stopped opening)") ||
		!strings.Contains(row, "| met |") {
		t.Errorf("stopped by the TCP memory guard: %q", row)
	}
	all, _, _, _ = sessionEngineResults()
	if row := targetRow(reportOf(all[:2]), "wss throughput down"); !strings.Contains(row, "not measured yet") {
		t.Errorf("no wss run, yet: %q", row)
	}
}

// Token plugin rounds get their own section and Targets rows: each round's
// rate over the fixed-target rate of the same round, the median and the
// worst of those; they stay out of the plain set-up table.
func TestReportTokenSetup(t *testing.T) {
	setup := func(label string, round int, rate, cpu float64) *Result {
		return &Result{Mode: "setup", Label: label, Round: round, Concurrency: 50, WindowSeconds: 5, Commit: "abc123",
			Machine: "Test CPU, 2 cores (nproc), Linux 6.0", Path: "/?token=bench", Proxy: "bin/websockify " + label + " {listen}",
			SessionsPerSec: newSpread([]float64{rate, rate}), ProxyCPU: newSpread([]float64{cpu, cpu}),
			SetupP50us: newSpread([]float64{1000}), SetupP99us: newSpread([]float64{5000}), Time: "2026-12-01T10:00:0" + fmt.Sprint(round) + "Z"}
	}
	redis := func(round int, rate float64) *Result {
		r := setup("ours-tokenredis", round, rate, 100)
		r.BackendCPU = newSpread([]float64{10, 10})
		return r
	}
	all := []*Result{
		{Mode: "setup", Label: "ours", SessionsPerSec: newSpread([]float64{4000}), Commit: "abc123", Time: "2026-12-01T09:00:00Z"},
		setup("ours-fixed", 1, 4000, 100), setup("ours-tokenfile", 1, 3800, 100), redis(1, 3000),
		setup("ours-tokenfile", 2, 3500, 100), redis(2, 3600), setup("ours-fixed", 2, 4000, 100),
		redis(3, 3500), setup("ours-fixed", 3, 3500, 100), setup("ours-tokenfile", 3, 3500, 100),
	}
	got := reportOf(all)
	plain, tokens, ok := strings.Cut(got, "### Set-up with token plugins")
	if !ok {
		t.Fatalf("no token section:\n%s", got)
	}
	if strings.Contains(strings.SplitN(plain, "### Session set-up rate", 2)[1], "ours-fixed") {
		t.Errorf("round runs in the plain set-up table:\n%s", plain)
	}
	for _, want := range []string{
		"Measured on: Test CPU, 2 cores (nproc), Linux 6.0. Commit: `abc123`.",
		// file: 0.95, 0.875, 1.00; redis: 0.75, 0.90, 1.00
		"| ours-tokenfile | `bin/websockify ours-tokenfile {listen}` | `/?token=bench` | 3 | 3500 [3500–3800] | 0.95 | 0.88 | 0.95, 0.88, 1.00 |",
		"| ours-tokenredis | `bin/websockify ours-tokenredis {listen}` | `/?token=bench` | 3 | 3500 [3000–3600] | 0.90 | 0.75 | 0.75, 0.90, 1.00 |",
		"| ours-fixed | `bin/websockify ours-fixed {listen}` | `/?token=bench` | 3 | 4000 [3500–4000] | 1 | 1 | - |",
		"| 100 [100–100] | - | 250 µs [250 µs–286 µs] |",          // CPU per session: 100% of a core over 4000/s
		"| 100 [100–100] | 10 [10–10] | 314 µs [306 µs–367 µs] |", // ... with the backend's 10% too
	} {
		if !strings.Contains(tokens, want) {
			t.Errorf("token section lacks %q:\n%s", want, tokens)
		}
	}
	for name, want := range map[string]string{
		"sessions set up per second with TokenFile":  "0.95 × fixed (median of 3 rounds; worst 0.88) | met |",
		"sessions set up per second with TokenRedis": "0.90 × fixed (median of 3 rounds; worst 0.75) | met |",
	} {
		if row := targetRow(got, name); !strings.Contains(row, want) {
			t.Errorf("Targets row %q is %q, want %q in it", name, row, want)
		}
	}
	if row := targetRow(reportOf(all[:1]), "sessions set up per second with TokenFile"); !strings.Contains(row, "not measured yet") {
		t.Errorf("without token rounds the row is %q", row)
	}
}

func TestWithPath(t *testing.T) {
	for in, want := range map[[2]string]string{
		{"ws://127.0.0.1:1/", "/?token=bench"}:           "ws://127.0.0.1:1/?token=bench",
		{"wss://127.0.0.1:1/x?a=b", "/"}:                 "wss://127.0.0.1:1/",
		{"ws://127.0.0.1:1/", "/websockify?token=a%20b"}: "ws://127.0.0.1:1/websockify?token=a%20b",
	} {
		got, err := withPath(in[0], in[1])
		if err != nil || got != want {
			t.Errorf("withPath(%q, %q) = %q, %v; want %q", in[0], in[1], got, err, want)
		}
	}
	if _, err := withPath("ws://127.0.0.1:1/", "?token=bench"); err == nil {
		t.Error("withPath took a query without a path")
	}
}

// The metrics rounds get their own section and Targets rows: each round's
// figure with metrics over the one without, the median and the worst.
func TestReportMetricsCost(t *testing.T) {
	run := func(label, mode, dir string, round int, v float64) *Result {
		r := &Result{Mode: mode, Dir: dir, Label: label, Round: round, Commit: "abc123", Machine: "Test CPU",
			ProxyCPU: newSpread([]float64{100}), Time: "2026-12-01T10:00:0" + fmt.Sprint(round) + "Z"}
		if mode == "setup" {
			r.SessionsPerSec = newSpread([]float64{v, v})
		} else {
			r.MBps = newSpread([]float64{v})
		}
		return r
	}
	var all []*Result
	for round, q := range []float64{0.99, 0.95, 1.01} {
		for _, m := range []struct{ mode, dir string }{{"setup", ""}, {"throughput", "down"}, {"throughput", "up"}} {
			all = append(all, run("ours-metrics-off", m.mode, m.dir, round+1, 1000), run("ours-metrics-on", m.mode, m.dir, round+1, 1000*q))
		}
	}
	got := reportOf(all)
	section, ok := strings.CutPrefix(got[strings.Index(got, "### Cost of --metrics-listen"):], "### Cost of --metrics-listen")
	if !ok {
		t.Fatalf("no metrics section:\n%s", got)
	}
	for _, want := range []string{
		"| sessions set up per second | 3 | 1000 [1000–1000] | 990 [950–1010] | 0.990 | 0.950 | 0.990, 0.950, 1.010 | 100 [100–100] | 100 [100–100] |",
		"| throughput up, one connection, MB/s | 3 | 1000 [1000–1000] | 990 [950–1010] | 0.990 | 0.950 |",
	} {
		if !strings.Contains(section, want) {
			t.Errorf("metrics section lacks %q:\n%s", want, section)
		}
	}
	if row := targetRow(got, "throughput down, one connection, MB/s with --metrics-listen"); !strings.Contains(row, "0.990 × without (median of 3 rounds; worst 0.950) | met |") {
		t.Errorf("Targets row %q", row)
	}
	for _, title := range []string{"### Throughput, one connection", "### Session set-up rate"} {
		if _, rest, ok := strings.Cut(got, title); ok {
			if table, _, _ := strings.Cut(rest, "### "); strings.Contains(table, "ours-metrics") {
				t.Errorf("round runs in %q:\n%s", title, table)
			}
		}
	}
}
